/**
 * Redis's stringmatchlen glob (KEYS, SCAN MATCH, CONFIG GET) over latin1
 * strings: *, ?, [abc], [^abc], [a-z], and \ to escape.
 */
export function globMatch(pattern: string, text: string, nocase = false): boolean {
  return matchFrom(pattern, 0, text, 0, nocase, 0);
}

function fold(c: string, nocase: boolean): string {
  return nocase ? c.toLowerCase() : c;
}

function matchFrom(p: string, pi: number, s: string, si: number, nocase: boolean, depth: number): boolean {
  if (depth > 1000) return false; // Redis also bounds the recursion of pathological patterns
  while (pi < p.length) {
    const c = p[pi];
    if (c === '*') {
      while (pi + 1 < p.length && p[pi + 1] === '*') pi++;
      if (pi + 1 === p.length) return true;
      for (let k = si; k <= s.length; k++) {
        if (matchFrom(p, pi + 1, s, k, nocase, depth + 1)) return true;
      }
      return false;
    }
    if (si >= s.length) return false;
    if (c === '?') {
      si++;
      pi++;
      continue;
    }
    if (c === '[') {
      pi++;
      const not = p[pi] === '^';
      if (not) pi++;
      let matched = false;
      while (pi < p.length && p[pi] !== ']') {
        if (p[pi] === '\\' && pi + 1 < p.length) {
          pi++;
          if (p[pi] === s[si]) matched = true;
        } else if (pi + 2 < p.length && p[pi + 1] === '-') {
          let lo = fold(p[pi], nocase);
          let hi = fold(p[pi + 2], nocase);
          if (lo > hi) [lo, hi] = [hi, lo];
          const ch = fold(s[si], nocase);
          if (ch >= lo && ch <= hi) matched = true;
          pi += 2;
        } else if (fold(p[pi], nocase) === fold(s[si], nocase)) {
          matched = true;
        }
        pi++;
      }
      if (not) matched = !matched;
      if (!matched) return false;
      pi++; // past ']' (or the end of an unterminated class)
      si++;
      continue;
    }
    let lit = c;
    if (c === '\\' && pi + 1 < p.length) lit = p[++pi];
    if (fold(lit, nocase) !== fold(s[si], nocase)) return false;
    pi++;
    si++;
  }
  return si === s.length;
}

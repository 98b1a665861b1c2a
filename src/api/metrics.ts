import type { DeploymentStatus } from '../deploy/types.ts';

/** Render controller status as Prometheus text exposition (counters and gauges, one family per stat). */
export function prometheus(status: {
  volumes: unknown[];
  functions: DeploymentStatus[];
  cache: unknown;
  poller: unknown;
  controller?: unknown;
}): string {
  const lines: string[] = [];
  const emit = (family: string, labels: Record<string, string>, stats: Record<string, unknown> | undefined) => {
    for (const [k, v] of Object.entries(stats ?? {})) {
      if (typeof v !== 'number' || !Number.isFinite(v)) continue;
      const name = `storvisor_${family}_${k.replace(/[^A-Za-z0-9_]/g, '_')}`;
      const l = Object.entries(labels)
        .map(([lk, lv]) => `${lk}="${lv.replace(/["\\\n]/g, '_')}"`)
        .join(',');
      lines.push(`${name}${l ? `{${l}}` : ''} ${v}`);
    }
  };
  for (const v of status.volumes as Array<{ name: string; size: number; stats?: Record<string, number> }>) {
    emit('volume', { volume: v.name }, { size_bytes: v.size, ...v.stats });
  }
  for (const f of status.functions) {
    emit('function', { name: f.name, function: f.function, deploy: f.deploy }, { up: f.state === 'running' ? 1 : 0, restarts: f.restarts, ...f.stats });
  }
  emit('cache', {}, status.cache as Record<string, unknown>);
  emit('poller', {}, status.poller as Record<string, unknown>);
  emit('controller', {}, status.controller as Record<string, unknown> | undefined);
  return lines.join('\n') + '\n';
}

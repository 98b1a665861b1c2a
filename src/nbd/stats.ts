/** Counters shared by all connections of one server (flat and numeric, for the management API). */
export interface NbdStats {
  connections: number;
  activeConnections: number;
  requests: number;
  reads: number;
  writes: number;
  bytesRead: number;
  bytesWritten: number;
  errors: number;
}

export function newStats(): NbdStats {
  return { connections: 0, activeConnections: 0, requests: 0, reads: 0, writes: 0, bytesRead: 0, bytesWritten: 0, errors: 0 };
}

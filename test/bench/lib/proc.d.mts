export interface Usage { rssMb: number, peakRssMb: number, cpuSeconds: number }
export function usage (pid: number): Promise<Usage>
export function sampler (pid: number, interval?: number): { stop(): Promise<{ seconds: number, cpuPercent: number, rssMb: number, maxRssMb: number, peakRssMb: number }> }

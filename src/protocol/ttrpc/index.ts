// The ttRPC transport: framing, status mapping, client and server.

export {
  FrameDecoder,
  FrameFlag,
  FrameType,
  defaultMaxFrameBytes,
  encodeFrame,
  frameHeaderBytes,
  readFrames,
} from "./frame.js";
export type { Frame } from "./frame.js";
export { fromWireStatus, statusOk, toWireStatus } from "./status.js";
export type { WireStatus } from "./status.js";
export { TtrpcConnection, createClient } from "./client.js";
export type { CallOptions, TtrpcClient, TtrpcConnectionOptions } from "./client.js";
export { TtrpcServer } from "./server.js";
export type { CallContext, Handler, ServiceImpl, TtrpcServerOptions } from "./server.js";

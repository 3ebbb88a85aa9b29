export * from './protocol.js'
export * from './client.js'
export * from './server.js'
export { Request as FileRequest, Response as FileResponse } from './pb/file.js'

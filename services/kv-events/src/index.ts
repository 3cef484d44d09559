export { KvEventsService } from './service.js';
export { KvEventsServiceConfigSchema, resolveServiceConfig, addServiceOptions, ENV_BINDINGS, DEFAULT_HTTP_PORT, type KvEventsServiceConfig, type KvEventsServiceConfigInput } from './config.js';
export { buildHttpServer, type HttpContext } from './http.js';

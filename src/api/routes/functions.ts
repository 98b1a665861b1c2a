import { invalidArgument } from '../../util/errors.ts';
import type { NotifyMode } from '../../config/config.ts';
import type { Route } from './types.ts';

/**
 *   GET    /functions                every function instance: state, address, restarts, stats
 *   POST   /functions                a function's config object (as in the config file)  -> 201
 *   GET    /functions/NAME
 *   DELETE /functions/NAME           undeploy (stopped cleanly, its volume synced)
 *   POST   /functions/NAME/restart   {}
 *   POST   /functions/NAME/notify    {"notify": "poll" | "notify" | "adaptive" | "poll-guest" | "poll-controller"}
 * Deploy, undeploy and notify are persisted (runtime-state.json); restart is not a change.
 * Changes run one at a time (Controller.exclusive), volume changes included.
 */
export const functionRoutes: Route[] = [
  { method: 'GET', path: '/functions', handler: async ({ controller }) => ({ status: 200, body: await controller.listFunctions() }) },
  { method: 'POST', path: '/functions', handler: async ({ controller, body }) => {
      const b = await body();
      return { status: 201, body: await controller.exclusive(() => controller.deployFunction(b)) };
    },
  },
  { method: 'GET', path: '/functions/:name', handler: async ({ controller, params }) => ({ status: 200, body: await controller.functionInfo(params[0]!) }) },
  {
    method: 'DELETE',
    path: '/functions/:name',
    handler: async ({ controller, params }) => {
      await controller.exclusive(() => controller.undeployFunction(params[0]!));
      return { status: 200, body: { undeployed: params[0] } };
    },
  },
  {
    method: 'POST',
    path: '/functions/:name/restart',
    handler: async ({ controller, params, body }) => {
      await body(); // bounded and checked like any other body, even if unused
      return { status: 200, body: await controller.exclusive(() => controller.restartFunction(params[0]!)) };
    },
  },
  {
    method: 'POST',
    path: '/functions/:name/notify',
    handler: async ({ controller, params, body }) => {
      const b = await body();
      if (typeof b.notify !== 'string') throw invalidArgument(`"notify" must be a string (got ${JSON.stringify(b.notify) ?? 'nothing'})`);
      return { status: 200, body: await controller.exclusive(() => controller.setNotify(params[0]!, b.notify as NotifyMode)) };
    },
  },
];

// oidc-provider ships no type declarations; the development IdP needs only this much of it.
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  /** A Koa application serving one OpenID Provider. */
  export class Provider {
    constructor(issuer: string, configuration: Record<string, unknown>);
    readonly issuer: string;
    proxy: boolean;
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    use(middleware: (ctx: any, next: () => Promise<void>) => Promise<void>): this;
    on(event: string, listener: (...args: any[]) => void): this;
    readonly Client: { find(id: string): Promise<any> };
    readonly Grant: new (props: { accountId: string; clientId: string }) => any;
    readonly RefreshToken: new (props: Record<string, unknown>) => any;
    readonly AccessToken: any;
    readonly ClientCredentials: any;
    [key: string]: any;
  }
  export default Provider;
  export const errors: Record<string, new (description?: string, detail?: string) => Error>;
}

declare module 'oidc-provider/lib/adapters/memory_adapter.js' {
  /** One in-memory storage shared by every model of the provider(s) given the returned factory. */
  export function createMemoryAdapter(clockTolerance?: number): (model: string) => unknown;
}

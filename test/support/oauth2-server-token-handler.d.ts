// The token handler of @node-oauth/oauth2-server v5 ships without types; test/support/federating-idp.ts
// extends it (the library has no hook for client authentication methods).
declare module '@node-oauth/oauth2-server/lib/handlers/token-handler.js' {
  const TokenHandler: new (options: Record<string, unknown>) => {
    handle(request: unknown, response: unknown): Promise<unknown>;
    [member: string]: unknown;
  };
  export default TokenHandler;
}

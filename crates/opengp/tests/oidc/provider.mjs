// A real OpenID Connect provider for the sign-in test: the npm package
// oidc-provider (installed by `cargo xtask test`), on a loopback port.
//
//   node provider.mjs NODE_MODULES REDIRECT_URI CLIENT_SECRET ACCOUNTS_JSON
//
// Prints the port it listens on, then serves until killed. Its built-in
// development interactions take any login name and password; the account
// is the login name, with the claims ACCOUNTS_JSON gives it (by name:
// {"name": ..., "roles": [...]}), and preferred_username the login name.
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [modules, redirectUri, secret, accountsJson] = process.argv.slice(2);
const accounts = JSON.parse(accountsJson);
const { default: Provider } = await import(
  pathToFileURL(path.join(modules, 'oidc-provider', 'lib', 'index.js')).href
);

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const provider = new Provider(`http://127.0.0.1:${port}`, {
    clients: [{
      client_id: 'opengp',
      client_secret: secret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    claims: {
      openid: ['sub'],
      profile: ['preferred_username', 'name'],
      roles: ['roles'],
    },
    // (The id_token carries `sub` only; the claims the scopes ask for
    // come from the UserInfo endpoint, as with NHS CIS2.)
    pkce: { required: () => true },
    cookies: { keys: ['opengp-test-provider'] },
    features: { devInteractions: { enabled: true } },
    async findAccount(_ctx, id) {
      const extra = accounts[id] || {};
      return {
        accountId: id,
        async claims() {
          return { sub: id, preferred_username: id, ...extra };
        },
      };
    },
  });
  server.on('request', provider.callback());
  process.stdout.write(`${port}\n`);
});

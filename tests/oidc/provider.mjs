// A real OpenID Connect provider for the tests: npm `oidc-provider` (9.x) on a loopback port,
// with the client and people the test gives it. Started by tests/common/oidc.rs as
//   node tests/oidc/provider.mjs '<json config>'
// and stopped by killing it. Prints `ready <issuer>` once it listens.
//
// Config: { port, clients: [{ client_id, client_secret, redirect_uris }],
//           accounts: { <login>: { password, sub, claims: {...}, amr?: [...], acr?: "..." } } }
//
// For the attacks, POST /__test/mode {"mode": ...} changes what the token endpoint hands out
// (the provider's own code still issues every token; these rewrite its ID token afterwards):
//   forge   - the same claims signed by a key the provider never published (same `kid`)
//   aud     - signed by the provider's key, for another audience
//   nonce   - signed by the provider's key, with another nonce
//   expired - signed by the provider's key, expired an hour ago
//   rotate  - the provider rotates: a new key signs, and /jwks publishes only the new key
//   null    - as issued
import Provider from 'oidc-provider';
import * as jose from 'jose';

const config = JSON.parse(process.argv[2] ?? '{}');
const port = Number(config.port);
const issuer = `http://127.0.0.1:${port}`;
const accounts = config.accounts ?? {};

const alg = 'RS256';
async function key(kid) {
  const { privateKey, publicKey } = await jose.generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await jose.exportJWK(privateKey)), kid, alg, use: 'sig' };
  const pub = { ...(await jose.exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { privateKey, jwk, pub };
}
const real = await key('k1');
const attacker = await key('k1');
const rotated = await key('k2');
let mode = null;

const bySub = Object.fromEntries(Object.values(accounts).map((a) => [a.sub, a]));

const provider = new Provider(issuer, {
  clients: (config.clients ?? []).map((c) => ({
    ...c,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  })),
  jwks: { keys: [real.jwk] },
  cookies: { keys: ['countersign-test-provider-cookie-key'] },
  pkce: { required: () => true },
  conformIdTokenClaims: false,
  claims: { openid: ['sub', 'amr'], email: ['email', 'email_verified'], profile: ['name', 'groups'] },
  features: { devInteractions: { enabled: false } },
  findAccount: async (ctx, sub) => {
    const a = bySub[sub];
    if (!a) return undefined;
    return { accountId: sub, claims: async () => ({ sub, ...a.claims }) };
  },
  // First-party client: the grant is given without a consent screen.
  loadExistingGrant: async (ctx) => {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
  ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Session: 600, Grant: 600 },
});
provider.proxy = false;

const page = (uid, error) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Test IdP sign-in</title><link rel="icon" href="data:,"></head>
<body><main><h1>Test identity provider</h1>
${error ? `<p role="alert">${error}</p>` : ''}
<form method="post" action="/interaction/${uid}/login">
<label for="login">Username</label> <input id="login" name="login" autocomplete="username" required>
<label for="password">Password</label> <input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in at the provider</button>
</form></main></body></html>`;

async function body(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

async function resign(idToken, signer, change) {
  const claims = { ...jose.decodeJwt(idToken), ...change };
  return new jose.SignJWT(claims).setProtectedHeader({ alg, kid: signer.jwk.kid, typ: 'JWT' }).sign(signer.privateKey);
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/__test/mode' && ctx.method === 'POST') {
    mode = JSON.parse((await body(ctx.req)) || '{}').mode ?? null;
    ctx.body = { mode };
    return;
  }
  const m = ctx.path.match(/^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/);
  if (m) {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.prompt.name !== 'login') {
      ctx.respond = false;
      await provider.interactionFinished(ctx.req, ctx.res, { consent: {} }, { mergeWithLastSubmission: true });
      return;
    }
    if (ctx.method === 'GET' && !m[2]) {
      ctx.type = 'html';
      ctx.body = page(details.uid);
      return;
    }
    if (ctx.method === 'POST' && m[2]) {
      const form = new URLSearchParams(await body(ctx.req));
      const a = accounts[form.get('login') ?? ''];
      if (!a || a.password !== form.get('password')) {
        ctx.type = 'html';
        ctx.status = 200;
        ctx.body = page(details.uid, 'Wrong username or password.');
        return;
      }
      ctx.respond = false;
      await provider.interactionFinished(
        ctx.req,
        ctx.res,
        { login: { accountId: a.sub, amr: a.amr ?? ['pwd'], acr: a.acr } },
        { mergeWithLastSubmission: false },
      );
      return;
    }
  }
  await next();
  if (ctx.path === '/jwks' && mode === 'rotate') {
    ctx.body = { keys: [rotated.pub] };
  }
  if (ctx.path === '/token' && ctx.body && ctx.body.id_token && mode) {
    const now = Math.floor(Date.now() / 1000);
    const t = ctx.body.id_token;
    const rewritten = {
      forge: () => resign(t, attacker, {}),
      aud: () => resign(t, real, { aud: 'someone-else' }),
      nonce: () => resign(t, real, { nonce: 'not-the-nonce-you-sent' }),
      expired: () => resign(t, real, { iat: now - 7200, exp: now - 3600 }),
      rotate: () => resign(t, rotated, {}),
    }[mode];
    if (rewritten) ctx.body = { ...ctx.body, id_token: await rewritten() };
  }
});

provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});

// Signing identities on your backend with Node.js (node:crypto only, no npm packages).
//
//   node sign.js hmac <secret> <utf8|hex> <identifier>
//   node sign.js timestamped <secret> <identifier> <unix_ts>
//   node sign.js jwt <secret> <app_id> <email> <name> <iat> <lifetime_secs>   (name "" = no name claim)
//
// tests/it/signing_snippets.rs runs this file and compares its output with tower_identity's signer.
"use strict";

const { createHmac } = require("node:crypto");

// HMAC-SHA256 of the identifier, 64 lowercase hex characters. The secret is used as
// text (its UTF-8 bytes), or hex-decoded first when your vendor hands out a hex secret.
function signIdentifier(secret, identifier, encoding = "utf8") {
  const key = encoding === "hex" ? hexKey(secret) : secret;
  return createHmac("sha256", key).update(identifier).digest("hex");
}

// Buffer.from(s, "hex") silently stops at the first non-hex character: check first.
function hexKey(secret) {
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(secret)) throw new Error("the secret is not hex");
  return Buffer.from(secret, "hex");
}

// Timestamped: "<hex of HMAC-SHA256(secret, `${identifier}-${ts}`)>-<ts>".
function signTimestamped(secret, identifier, ts = Math.floor(Date.now() / 1000)) {
  const mac = createHmac("sha256", secret).update(`${identifier}-${ts}`).digest("hex");
  return `${mac}-${ts}`;
}

// A short-lived HS256 JWT. The secret is used exactly as given (never hex-decoded).
// With npm jsonwebtoken instead:
//   jwt.sign({ email, name, aud: appId, iat, exp: iat + lifetime }, secret, { algorithm: "HS256" })
function chatWidgetJwt(secret, appId, email, name, iat = Math.floor(Date.now() / 1000), lifetime = 600) {
  const claims = { email, aud: appId, iat, exp: iat + lifetime };
  if (name) claims.name = name;
  const part = (json) => Buffer.from(JSON.stringify(json)).toString("base64url");
  const input = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
  return `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
}

function main([command, ...args]) {
  const arity = { hmac: 3, timestamped: 3, jwt: 6 }[command];
  if (arity === undefined || args.length !== arity) {
    throw new Error("usage: sign.js hmac|timestamped|jwt ... (see the top of this file)");
  }
  const unixSecs = (s) => {
    if (!/^\d+$/.test(s)) throw new Error(`not a unix time in seconds: ${s}`);
    return Number(s);
  };
  switch (command) {
    case "hmac": {
      const [secret, encoding, identifier] = args;
      if (encoding !== "utf8" && encoding !== "hex") throw new Error("encoding must be utf8 or hex");
      return signIdentifier(secret, identifier, encoding);
    }
    case "timestamped": {
      const [secret, identifier, ts] = args;
      return signTimestamped(secret, identifier, unixSecs(ts));
    }
    case "jwt": {
      const [secret, appId, email, name, iat, lifetime] = args;
      return chatWidgetJwt(secret, appId, email, name, unixSecs(iat), unixSecs(lifetime));
    }
  }
}

try {
  console.log(main(process.argv.slice(2)));
} catch (err) {
  console.error(`error: ${err.message}`);
  process.exit(1);
}

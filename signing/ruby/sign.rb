# frozen_string_literal: true

# Signing identities on your backend with Ruby (standard library only, no gems).
#
#   ruby sign.rb hmac <secret> <utf8|hex> <identifier>
#   ruby sign.rb timestamped <secret> <identifier> <unix_ts>
#   ruby sign.rb jwt <secret> <app_id> <email> <name> <iat> <lifetime_secs>   (name "" = no name claim)
#
# tests/it/signing_snippets.rs runs this file and compares its output with tower_identity's signer.

require "base64"
require "json"
require "openssl"

# HMAC-SHA256 of the identifier, 64 lowercase hex characters. The secret is used as
# text (its UTF-8 bytes), or hex-decoded first when your vendor hands out a hex secret.
def sign_identifier(secret, identifier, encoding: "utf8")
  key = encoding == "hex" ? hex_key(secret) : secret
  OpenSSL::HMAC.hexdigest("SHA256", key, identifier)
end

# [secret].pack("H*") accepts any string: check that it is hex first.
def hex_key(secret)
  raise ArgumentError, "the secret is not hex" unless secret.match?(/\A(?:\h\h)+\z/)

  [secret].pack("H*")
end

# Timestamped: "<hex of HMAC-SHA256(secret, "#{identifier}-#{ts}")>-<ts>".
def sign_timestamped(secret, identifier, ts = Time.now.to_i)
  "#{OpenSSL::HMAC.hexdigest('SHA256', secret, "#{identifier}-#{ts}")}-#{ts}"
end

# A short-lived HS256 JWT. The secret is used exactly as given (never hex-decoded).
def chat_widget_jwt(secret, app_id, email, name: nil, iat: Time.now.to_i, lifetime: 600)
  claims = { email: email, aud: app_id, iat: iat, exp: iat + lifetime }
  claims[:name] = name unless name.nil? || name.empty?
  part = ->(data) { Base64.urlsafe_encode64(data, padding: false) }
  input = "#{part.(JSON.generate({ alg: 'HS256', typ: 'JWT' }))}.#{part.(JSON.generate(claims))}"
  "#{input}.#{part.(OpenSSL::HMAC.digest('SHA256', secret, input))}"
end

def unix_secs(text)
  raise ArgumentError, "not a unix time in seconds: #{text}" unless text.match?(/\A\d+\z/)

  Integer(text, 10)
end

def main(argv)
  # Arguments are UTF-8 whatever the locale says.
  command, *args = argv.map { |a| a.dup.force_encoding(Encoding::UTF_8) }
  arity = { "hmac" => 3, "timestamped" => 3, "jwt" => 6 }[command]
  raise ArgumentError, "usage: sign.rb hmac|timestamped|jwt ... (see the top of this file)" if arity != args.length

  case command
  when "hmac"
    secret, encoding, identifier = args
    raise ArgumentError, "encoding must be utf8 or hex" unless %w[utf8 hex].include?(encoding)

    sign_identifier(secret, identifier, encoding: encoding)
  when "timestamped"
    secret, identifier, ts = args
    sign_timestamped(secret, identifier, unix_secs(ts))
  else
    secret, app_id, email, name, iat, lifetime = args
    chat_widget_jwt(secret, app_id, email, name: name, iat: unix_secs(iat), lifetime: unix_secs(lifetime))
  end
end

begin
  puts main(ARGV)
rescue ArgumentError => e
  warn "error: #{e.message}"
  exit 1
end

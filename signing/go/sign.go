// Signing identities on your backend with Go (standard library only).
//
//	go run sign.go hmac <secret> <utf8|hex> <identifier>
//	go run sign.go timestamped <secret> <identifier> <unix_ts>
//	go run sign.go jwt <secret> <app_id> <email> <name> <iat> <lifetime_secs>   (name "" = no name claim)
//
// tests/it/signing_snippets.rs runs this file and compares its output with tower_identity's signer.
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// SignIdentifier returns the HMAC-SHA256 of identifier as 64 lowercase hex
// characters. key is []byte(secret) for a secret used as text, or
// hex.DecodeString(secret) when your vendor hands out a hex secret.
func SignIdentifier(key []byte, identifier string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(identifier))
	return hex.EncodeToString(mac.Sum(nil))
}

// SignTimestamped returns "<hex of HMAC-SHA256(secret, "<identifier>-<ts>")>-<ts>";
// pass time.Now().Unix() as ts.
func SignTimestamped(secret, identifier string, ts int64) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "%s-%d", identifier, ts)
	return fmt.Sprintf("%x-%d", mac.Sum(nil), ts)
}

type chatWidgetClaims struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
	Aud   string `json:"aud"`
	Iat   int64  `json:"iat"`
	Exp   int64  `json:"exp"`
}

// ChatWidgetJWT returns a short-lived HS256 JWT; the secret is used exactly as
// given (never hex-decoded). With github.com/golang-jwt/jwt/v5 instead:
// jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret)).
func ChatWidgetJWT(secret, appID, email, name string, iat time.Time, lifetime time.Duration) (string, error) {
	claims, err := json.Marshal(chatWidgetClaims{
		Email: email, Name: name, Aud: appID, Iat: iat.Unix(), Exp: iat.Add(lifetime).Unix(),
	})
	if err != nil {
		return "", err
	}
	b64 := base64.RawURLEncoding.EncodeToString
	input := b64([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + b64(claims)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(input))
	return input + "." + b64(mac.Sum(nil)), nil
}

func run(args []string) (string, error) {
	arity := map[string]int{"hmac": 4, "timestamped": 4, "jwt": 7}
	if len(args) == 0 || arity[args[0]] != len(args) {
		return "", errors.New("usage: sign.go hmac|timestamped|jwt ... (see the top of this file)")
	}
	switch args[0] {
	case "hmac":
		secret, encoding, identifier := args[1], args[2], args[3]
		switch encoding {
		case "utf8":
			return SignIdentifier([]byte(secret), identifier), nil
		case "hex":
			key, err := hex.DecodeString(secret)
			if err != nil {
				return "", fmt.Errorf("the secret is not hex: %w", err)
			}
			return SignIdentifier(key, identifier), nil
		}
		return "", errors.New("encoding must be utf8 or hex")
	case "timestamped":
		ts, err := strconv.ParseInt(args[3], 10, 64)
		if err != nil || ts < 0 {
			return "", fmt.Errorf("not a unix time in seconds: %s", args[3])
		}
		return SignTimestamped(args[1], args[2], ts), nil
	default: // "jwt"
		iat, err1 := strconv.ParseInt(args[5], 10, 64)
		lifetime, err2 := strconv.ParseInt(args[6], 10, 64)
		if err1 != nil || err2 != nil || iat < 0 || lifetime < 0 {
			return "", errors.New("iat and lifetime_secs must be whole seconds")
		}
		return ChatWidgetJWT(args[1], args[2], args[3], args[4], time.Unix(iat, 0), time.Duration(lifetime)*time.Second)
	}
}

func main() {
	out, err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	fmt.Println(out)
}

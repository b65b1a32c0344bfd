package platform

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// tokenClaims are the claims of an access token the platform mints. They
// follow Entra ID's v1 access tokens (aud, iss, oid, tid, appid, xms_mirid),
// because tools on a VM (az login --identity) decode the token they get.
type tokenClaims struct {
	Aud      string `json:"aud"`
	Iss      string `json:"iss"`
	Iat      int64  `json:"iat"`
	Nbf      int64  `json:"nbf"`
	Exp      int64  `json:"exp"`
	Oid      string `json:"oid"`
	Sub      string `json:"sub"`
	Tid      string `json:"tid"`
	AppID    string `json:"appid"`
	IdType   string `json:"idtyp"`
	MIResID  string `json:"xms_mirid"`
	TokenUse string `json:"ver"`
}

// tokenSigner signs tokens with a key that lives only in this process (HS256),
// so only tokens this platform's IMDS minted verify.
type tokenSigner struct{ key []byte }

func newTokenSigner() (*tokenSigner, error) {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	return &tokenSigner{key: k}, nil
}

var b64 = base64.RawURLEncoding

func (s *tokenSigner) sign(c tokenClaims) (string, error) {
	head := b64.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	body, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	unsigned := head + "." + b64.EncodeToString(body)
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(unsigned))
	return unsigned + "." + b64.EncodeToString(m.Sum(nil)), nil
}

var (
	errTokenInvalid = errors.New("invalid token")
	errTokenExpired = errors.New("token expired")
)

// verify checks the signature and the validity window; the audience and the
// caller's rights are the service's to check.
func (s *tokenSigner) verify(tok string, now time.Time) (tokenClaims, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return tokenClaims{}, errTokenInvalid
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return tokenClaims{}, errTokenInvalid
	}
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(sig, m.Sum(nil)) {
		return tokenClaims{}, errTokenInvalid
	}
	body, err := b64.DecodeString(parts[1])
	if err != nil {
		return tokenClaims{}, errTokenInvalid
	}
	var c tokenClaims
	if err := json.Unmarshal(body, &c); err != nil {
		return tokenClaims{}, errTokenInvalid
	}
	if now.Unix() >= c.Exp {
		return c, errTokenExpired
	}
	if now.Unix() < c.Nbf {
		return c, errTokenInvalid
	}
	return c, nil
}

// bearer extracts the token of an "Authorization: Bearer …" header.
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

package lookup

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// sealer makes the AEAD that seals page cursors, from secret or, without
// one, a random key.
func sealer(secret []byte) (cipher.AEAD, error) {
	key := make([]byte, 32)
	if len(secret) > 0 {
		sum := sha256.Sum256(append([]byte("jutong lookup cursor\x00"), secret...))
		key = sum[:]
	} else if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// cursor seals the key a next page starts after.
func (s *Service) cursor(key string) string {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, []byte(key), nil))
}

// cursorKey opens a cursor ("" for the first page).
func (s *Service) cursorKey(c string) (string, error) {
	if c == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	n := s.aead.NonceSize()
	if err == nil && len(b) > n {
		if key, err := s.aead.Open(nil, b[:n], b[n:], nil); err == nil {
			return string(key), nil
		}
	}
	return "", &Denied{Status: 400, Reason: "after: not a cursor this bus issued (or one from before its restart): start from the first page"}
}

// CursorSecret derives the key that seals the cursors from a secret the
// instances of one bus share (the bus's Kafka password), so that a cursor
// from one instance opens at another.
func CursorSecret(shared string) []byte {
	sum := sha256.Sum256([]byte("lookup cursors\x00" + shared))
	return sum[:]
}

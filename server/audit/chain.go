package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
)

// The chain's own records.
const (
	// ChainStart begins a writer's chain: signed, it names the last record
	// of the topic when the chain began (After), linking chains together.
	ChainStart = "chain_start"
	// ChainHead seals a chain up to itself: signed, written every
	// SealEvery while the chain grows and when its writer closes.
	ChainHead = "chain_head"
)

// A Chain makes a writer's audit records tamper-evident: each carries its
// chain's name, its sequence number and the hash (SHA-256 of the record's
// value) of the chain's previous record; the chain begins with a signed
// ChainStart and is sealed by signed ChainHead records. Every process
// writing the audit trail has chains of its own, so writers need no
// coordination; Verify walks them all.
type Chain struct {
	key  ed25519.PrivateKey
	name string // the writer's stable name; the chain id adds a random part
	// last returns the hash of the topic's last record ("" for none).
	last func(ctx context.Context) (string, error)

	mu       sync.Mutex
	id       string
	seq      int64
	prev     string
	unsealed bool
}

// NewChain makes a chain for a writer named name, signing with key.
func NewChain(key ed25519.PrivateKey, name string) *Chain {
	return &Chain{key: key, name: name}
}

// Hash is the hash a record's successor carries: SHA-256 of its value, hex.
func Hash(value []byte) string {
	h := sha256.Sum256(value)
	return hex.EncodeToString(h[:])
}

// signed is what a chain's signature covers.
func signed(chain string, seq int64, prev, after string) []byte {
	return []byte("jutong audit chain v1\n" + chain + "\n" + strconv.FormatInt(seq, 10) + "\n" + prev + "\n" + after)
}

// a sealing is the records to write and what to do once their fate is known.
type sealing struct {
	values [][]byte
	c      *Chain
	before struct {
		id       string
		seq      int64
		prev     string
		unsealed bool
	}
}

// done moves the chain on when the records were written (ok), or back when
// they certainly were not (an aborted transaction). unknown: the outcome is
// not known (a failed produce may have landed): the chain ends there and
// the next record begins a new one.
func (s *sealing) done(ok, unknown bool) {
	c := s.c
	switch {
	case unknown:
		c.id = ""
	case !ok:
		c.id, c.seq, c.prev, c.unsealed = s.before.id, s.before.seq, s.before.prev, s.before.unsealed
	}
	c.mu.Unlock()
}

// seal locks the chain and turns events into chained record values; the
// caller writes them and calls done. A chain not begun yet begins with a
// ChainStart.
func (c *Chain) seal(ctx context.Context, events []Event) (*sealing, error) {
	c.mu.Lock()
	s := &sealing{c: c}
	s.before.id, s.before.seq, s.before.prev, s.before.unsealed = c.id, c.seq, c.prev, c.unsealed
	if c.id == "" {
		after := ""
		if c.last != nil {
			var err error
			if after, err = c.last(ctx); err != nil {
				c.mu.Unlock()
				return nil, fmt.Errorf("audit: begin a chain: %w", err)
			}
		}
		var r [8]byte
		_, _ = rand.Read(r[:])
		c.id, c.seq, c.prev = c.name+"/"+hex.EncodeToString(r[:]), -1, ""
		start := Event{Kind: ChainStart, Actor: "jutong", After: after, Detail: "a writer's audit chain begins"}
		start.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(c.key, signed(c.id, 0, "", after)))
		events = append([]Event{start}, events...)
	}
	now := time.Now().UTC()
	for _, e := range events {
		if e.Time.IsZero() {
			e.Time = now
		}
		c.seq++
		e.Chain, e.Seq, e.Prev = c.id, c.seq, c.prev
		if e.Kind == ChainHead {
			e.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(c.key, signed(c.id, c.seq, c.prev, "")))
		}
		b, err := json.Marshal(e)
		if err != nil {
			s.done(false, false)
			return nil, err
		}
		s.values = append(s.values, b)
		c.prev = Hash(b)
		c.unsealed = e.Kind != ChainHead
	}
	return s, nil
}

// The details of heads: a final head ends its chain (its writer closed).
const (
	headDetail  = "seals the chain up to here"
	finalDetail = "seals the chain: its writer closed"
)

// head is the ChainHead to write when the chain grew since its last one
// (nil otherwise); a final one ends the chain.
func (c *Chain) head(final bool) []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.id == "" || (!c.unsealed && !final) {
		return nil
	}
	if final {
		return []Event{{Kind: ChainHead, Actor: "jutong", Detail: finalDetail}}
	}
	return []Event{{Kind: ChainHead, Actor: "jutong", Detail: headDetail}}
}

// lastRecordHash returns a function giving the hash of the last committed
// record of topic's partition 0 ("" when it has none).
func lastRecordHash(k []kgo.Opt, topic string) func(ctx context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		admin, err := kafkaconn.NewClient(k)
		if err != nil {
			return "", err
		}
		ends, err := kadm.NewClient(admin).ListCommittedOffsets(ctx, topic)
		admin.Close()
		if err != nil {
			return "", err
		}
		end, ok := ends.Lookup(topic, 0)
		if !ok || end.Err != nil {
			return "", fmt.Errorf("the end of %s: %v", topic, end.Err)
		}
		if end.Offset <= 0 {
			return "", nil
		}
		// The last records may be transaction markers: read a short span.
		from := max(0, end.Offset-64)
		cl, err := kafkaconn.NewClient(k, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(from)}}),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
		if err != nil {
			return "", err
		}
		defer cl.Close()
		last := ""
		for {
			fs := cl.PollFetches(ctx)
			if err := fs.Err0(); err != nil {
				return "", err
			}
			done := false
			fs.EachRecord(func(r *kgo.Record) {
				if r.Attrs.IsControl() {
					// markers carry no hash
				} else {
					last = Hash(r.Value)
				}
				if r.Offset >= end.Offset-1 {
					done = true
				}
			})
			if done {
				return last, nil
			}
		}
	}
}

// The key files: the bus's Ed25519 signing key (PKCS #8 PEM, 0600) and its
// public key (PKIX PEM), which departments use to verify offline.
const (
	KeyFile       = "audit-key.pem"
	PublicKeyFile = "audit-key.pub.pem"
)

// ReadKey reads the signing key at path (it must exist).
func ReadKey(path string) (ed25519.PrivateKey, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	return LoadOrCreateKey(path)
}

// LoadOrCreateKey reads the signing key at path, or makes one there (0600)
// with its public key beside it (path's directory, PublicKeyFile).
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		der, _ := x509.MarshalPKCS8PrivateKey(priv)
		pub, _ := x509.MarshalPKIXPublicKey(priv.Public())
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, err
		}
		if err := os.WriteFile(publicPath(path), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
			return nil, err
		}
		return priv, nil
	}
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: not PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key", path)
	}
	return priv, nil
}

func publicPath(keyPath string) string { return filepath.Join(filepath.Dir(keyPath), PublicKeyFile) }

// ReadPublicKey reads a public key written by LoadOrCreateKey (PEM), or
// given as base64 of its 32 bytes.
func ReadPublicKey(pathOrBase64 string) (ed25519.PublicKey, error) {
	if raw, err := base64.StdEncoding.DecodeString(pathOrBase64); err == nil && len(raw) == ed25519.PublicKeySize {
		return ed25519.PublicKey(raw), nil
	}
	b, err := os.ReadFile(pathOrBase64)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: not PEM", pathOrBase64)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pathOrBase64, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 public key", pathOrBase64)
	}
	return pub, nil
}

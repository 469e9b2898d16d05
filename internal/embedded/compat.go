package embedded

import (
	"crypto/tls"
	"encoding/binary"
	"net"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// kfake serves SASLHandshake v1 only and advertises it as 1..1. librdkafka
// (kcat, confluent-kafka-*) up to at least 2.x refuses to authenticate unless
// the broker advertises v0 too, although it then sends v1 (a real Kafka
// advertises 0..1). The listener below rewrites that one number in the
// ApiVersions responses, so that librdkafka clients authenticate against the
// embedded cluster; requests and every other byte pass untouched.

// compatListen returns a listen function like net.Listen, with
// connections that advertise SASLHandshake from v0; with tc, over TLS (the
// rewriting sees the decrypted stream, so it is done here rather than by
// kfake's own TLS option, which would wrap it from outside).
func compatListen(tc *tls.Config) func(network, address string) (net.Listener, error) {
	return func(network, address string) (net.Listener, error) {
		ln, err := net.Listen(network, address)
		if err != nil {
			return nil, err
		}
		if tc != nil {
			ln = tls.NewListener(ln, tc)
		}
		return compatListener{ln}, nil
	}
}

type compatListener struct{ net.Listener }

func (l compatListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &compatConn{Conn: c, pending: map[int32]int16{}}, nil
}

// compatConn watches the requests for ApiVersions (key 18) and rewrites
// their responses. kfake reads a request as its 4-byte size then its body,
// and writes each response in one Write.
type compatConn struct {
	net.Conn

	// read side: where we are in the current request frame
	sizeBuf []byte
	left    int    // body bytes still to come
	head    []byte // the first 8 body bytes: key, version, correlation id
	mu      sync.Mutex
	pending map[int32]int16 // correlation id -> ApiVersions request version
}

func (c *compatConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.observe(b[:n])
	return n, err
}

// observe follows the request stream to spot ApiVersions requests.
func (c *compatConn) observe(p []byte) {
	for len(p) > 0 {
		if c.left == 0 {
			need := 4 - len(c.sizeBuf)
			take := min(need, len(p))
			c.sizeBuf = append(c.sizeBuf, p[:take]...)
			p = p[take:]
			if len(c.sizeBuf) == 4 {
				c.left = int(binary.BigEndian.Uint32(c.sizeBuf))
				c.sizeBuf = c.sizeBuf[:0]
				c.head = c.head[:0]
			}
			continue
		}
		take := min(c.left, len(p))
		if len(c.head) < 8 {
			c.head = append(c.head, p[:min(take, 8-len(c.head))]...)
			if len(c.head) == 8 && int16(binary.BigEndian.Uint16(c.head[0:2])) == 18 {
				c.mu.Lock()
				c.pending[int32(binary.BigEndian.Uint32(c.head[4:8]))] = int16(binary.BigEndian.Uint16(c.head[2:4]))
				c.mu.Unlock()
			}
		}
		c.left -= take
		p = p[take:]
	}
}

func (c *compatConn) Write(b []byte) (int, error) {
	if len(b) >= 8 {
		corr := int32(binary.BigEndian.Uint32(b[4:8]))
		c.mu.Lock()
		version, ok := c.pending[corr]
		delete(c.pending, corr)
		c.mu.Unlock()
		if ok {
			if out := rewriteApiVersions(b, version); out != nil {
				if _, err := c.Conn.Write(out); err != nil {
					return 0, err
				}
				return len(b), nil
			}
		}
	}
	return c.Conn.Write(b)
}

// rewriteApiVersions returns the frame with SASLHandshake advertised from
// v0, or nil to send it as it is. ApiVersions responses always carry a v0
// response header (no tagged fields), whatever their version.
func rewriteApiVersions(frame []byte, version int16) []byte {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = version
	if err := resp.ReadFrom(frame[8:]); err != nil {
		return nil
	}
	changed := false
	for i := range resp.ApiKeys {
		if resp.ApiKeys[i].ApiKey == 17 && resp.ApiKeys[i].MinVersion > 0 {
			resp.ApiKeys[i].MinVersion = 0
			changed = true
		}
	}
	if !changed {
		return nil
	}
	out := resp.AppendTo(append([]byte(nil), frame[:8]...))
	binary.BigEndian.PutUint32(out[:4], uint32(len(out)-4))
	return out
}

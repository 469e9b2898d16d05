package embedded

import (
	"crypto/tls"
	"encoding/binary"
	"net"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Where kfake's answers differ from a real Kafka broker's in a way that
// stops a widely used client, the listener below rewrites them; requests
// and every other byte pass untouched.
//
//   - ApiVersions: kfake serves SASLHandshake v1 only and advertises it as
//     1..1. librdkafka (kcat, confluent-kafka-*) up to at least 2.x refuses to
//     authenticate unless the broker advertises v0 too, although it then
//     sends v1 (a real Kafka advertises 0..1).
//   - SASLHandshake: kfake answers a handshake it accepts with an empty list
//     of mechanisms, and accepts any mechanism it implements whatever users
//     exist. A real Kafka lists its enabled mechanisms (sasl.enabled.mechanisms)
//     in every answer and refuses any other mechanism with
//     UNSUPPORTED_SASL_MECHANISM; kafkajs checks the list and refuses to log
//     in ("SASL SCRAM-SHA-256 mechanism is not supported by the server").

// Request keys whose answers are rewritten.
const (
	keySASLHandshake = 17
	keyApiVersions   = 18
)

// compatListen returns a listen function like net.Listen, with connections
// whose answers are those of a real broker with the given SASL mechanisms
// enabled; with tc, over TLS (the rewriting sees the decrypted stream, so it
// is done here rather than by kfake's own TLS option, which would wrap it
// from outside).
func compatListen(tc *tls.Config, mechanisms []string) func(network, address string) (net.Listener, error) {
	return func(network, address string) (net.Listener, error) {
		ln, err := net.Listen(network, address)
		if err != nil {
			return nil, err
		}
		if tc != nil {
			ln = tls.NewListener(ln, tc)
		}
		return compatListener{ln, mechanisms}, nil
	}
}

type compatListener struct {
	net.Listener
	mechanisms []string
}

func (l compatListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &compatConn{Conn: c, mechanisms: l.mechanisms, pending: map[int32]pendingReq{}}, nil
}

// pendingReq is a request whose answer is to be rewritten.
type pendingReq struct {
	key, version int16
	mechanism    string // SASLHandshake's
}

// headLimit is how much of a request body is kept to read it: the whole of
// a SASLHandshake (header and mechanism name), the first 8 bytes (key,
// version, correlation id) of any other.
const headLimit = 512

// compatConn watches the requests for those whose answers it rewrites.
// kfake reads a request as its 4-byte size then its body, and writes each
// response in one Write.
type compatConn struct {
	net.Conn
	mechanisms []string

	// read side: where we are in the current request frame
	sizeBuf []byte
	left    int    // body bytes still to come
	head    []byte // the start of the body
	mu      sync.Mutex
	pending map[int32]pendingReq // by correlation id
}

func (c *compatConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.observe(b[:n])
	return n, err
}

// observe follows the request stream to spot the requests to rewrite.
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
		if len(c.head) < headLimit {
			c.head = append(c.head, p[:min(take, headLimit-len(c.head))]...)
		}
		c.left -= take
		p = p[take:]
		if c.left == 0 {
			c.request(c.head)
		}
	}
}

// request notes a whole request's start (up to headLimit bytes).
func (c *compatConn) request(body []byte) {
	if len(body) < 8 {
		return
	}
	req := pendingReq{key: int16(binary.BigEndian.Uint16(body[0:2])), version: int16(binary.BigEndian.Uint16(body[2:4]))}
	corr := int32(binary.BigEndian.Uint32(body[4:8]))
	switch req.key {
	case keyApiVersions:
	case keySASLHandshake:
		// v0 and v1 use request header v1: client id (nullable string),
		// then the body: the mechanism (string).
		rest := body[8:]
		if len(rest) < 2 {
			return
		}
		if n := int(int16(binary.BigEndian.Uint16(rest))); n > 0 {
			rest = rest[2:]
			if len(rest) < n {
				return
			}
			rest = rest[n:]
		} else {
			rest = rest[2:]
		}
		if len(rest) < 2 {
			return
		}
		n := int(binary.BigEndian.Uint16(rest))
		if len(rest) < 2+n {
			return
		}
		req.mechanism = string(rest[2 : 2+n])
	default:
		return
	}
	c.mu.Lock()
	c.pending[corr] = req
	c.mu.Unlock()
}

func (c *compatConn) Write(b []byte) (int, error) {
	if len(b) >= 8 {
		corr := int32(binary.BigEndian.Uint32(b[4:8]))
		c.mu.Lock()
		req, ok := c.pending[corr]
		delete(c.pending, corr)
		c.mu.Unlock()
		if ok {
			var out []byte
			switch req.key {
			case keyApiVersions:
				out = rewriteApiVersions(b, req.version)
			case keySASLHandshake:
				out = rewriteSASLHandshake(b, req, c.mechanisms)
			}
			if out != nil {
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
		if resp.ApiKeys[i].ApiKey == keySASLHandshake && resp.ApiKeys[i].MinVersion > 0 {
			resp.ApiKeys[i].MinVersion = 0
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return reframe(frame, resp)
}

// rewriteSASLHandshake answers as a broker whose enabled mechanisms are
// mechanisms: their list in every answer, and UNSUPPORTED_SASL_MECHANISM for
// any other (kfake then waits in vain for an authentication it cannot pass:
// it has no users of that mechanism, and the client gives up on the error).
// SASLHandshake v0 and v1 have a v0 response header.
func rewriteSASLHandshake(frame []byte, req pendingReq, mechanisms []string) []byte {
	if len(mechanisms) == 0 {
		return nil
	}
	resp := kmsg.NewPtrSASLHandshakeResponse()
	resp.Version = req.version
	if err := resp.ReadFrom(frame[8:]); err != nil {
		return nil
	}
	if resp.ErrorCode == 0 && !slices.Contains(mechanisms, req.mechanism) {
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
	}
	if resp.ErrorCode == 0 || resp.ErrorCode == kerr.UnsupportedSaslMechanism.Code {
		resp.SupportedMechanisms = slices.Clone(mechanisms)
	}
	return reframe(frame, resp)
}

// reframe encodes resp behind frame's size and v0 response header
// (correlation id).
func reframe(frame []byte, resp kmsg.Response) []byte {
	out := resp.AppendTo(append([]byte(nil), frame[:8]...))
	binary.BigEndian.PutUint32(out[:4], uint32(len(out)-4))
	return out
}

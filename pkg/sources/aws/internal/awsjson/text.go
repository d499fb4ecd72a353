package awsjson

import (
	"errors"
	"fmt"
	"io"
	"unicode/utf16"
	"unicode/utf8"
)

// maxBody bounds a response: BatchGetSecretValue answers up to 20 secrets of
// 64 KiB each, encoded.
const maxBody = 16 << 20

var errTooLarge = fmt.Errorf("response larger than %d bytes", maxBody)

// readBody reads r whole, clearing every buffer it outgrows so that no copy
// of a secret value is left behind for the garbage collector.
func readBody(r io.Reader, size int64) ([]byte, error) {
	n := 4096
	if size > 0 && size <= maxBody {
		n = int(size) + 1 // +1: EOF without a grow
	}
	buf := make([]byte, 0, n)
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= maxBody {
				clear(buf)
				return nil, errTooLarge
			}
			bigger := make([]byte, len(buf), 2*cap(buf))
			copy(bigger, buf)
			clear(buf)
			buf = bigger
		}
		m, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// SecretText is a JSON string decoded straight into bytes, so that a secret
// value never becomes an immutable Go string.
type SecretText []byte

func (t *SecretText) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	b, ok := unquote(data)
	if !ok {
		return errors.New("malformed JSON string") // never quote the data
	}
	*t = b
	return nil
}

// Wipe clears the bytes.
func (t *SecretText) Wipe() {
	if t != nil {
		clear(*t)
	}
}

// unquote decodes a JSON string literal into new bytes.
func unquote(data []byte) ([]byte, bool) {
	if len(data) < 2 || data[0] != '"' || data[len(data)-1] != '"' {
		return nil, false
	}
	s := data[1 : len(data)-1]
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(s) {
			clear(out)
			return nil, false
		}
		switch s[i+1] {
		case '"', '\\', '/':
			out = append(out, s[i+1])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(s[i+2:])
			if !ok {
				clear(out)
				return nil, false
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if r2, ok := hex4(s[min(i+2, len(s)):]); ok && i+1 < len(s) && s[i] == '\\' && s[i+1] == 'u' {
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						out = utf8.AppendRune(out, dec)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			clear(out)
			return nil, false
		}
		i += 2
	}
	return out, true
}

func hex4(s []byte) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

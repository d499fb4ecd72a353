package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const canary = "canary-9f8e7d6c"

func TestRedactedEverywhere(t *testing.T) {
	v := FromString(canary)
	type wrapper struct {
		Name  string
		Value Value
		Ptr   *Value
	}
	w := wrapper{Name: "x", Value: v, Ptr: &v}
	hidden := struct{ v Value }{v} // fmt cannot call methods on unexported fields
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T", "%10s", "%-10v", "%p"} {
		outs = append(outs, fmt.Sprintf(verb, v), fmt.Sprintf(verb, w), fmt.Sprintf(verb, &v), fmt.Sprintf(verb, hidden))
	}
	outs = append(outs, fmt.Sprint(v), fmt.Sprintln(v, w), v.String(), v.GoString())
	j, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	outs = append(outs, string(j))
	txt, _ := v.MarshalText()
	outs = append(outs, string(txt))
	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&buf, nil), slog.NewTextHandler(&buf, nil)} {
		l := slog.New(h)
		l.Info("msg", "value", v, "wrapper", w, "any", any(v))
	}
	outs = append(outs, buf.String())
	for _, o := range outs {
		if strings.Contains(o, canary) || strings.Contains(o, fmt.Sprintf("%x", canary)) {
			t.Errorf("leaked: %s", o)
		}
	}
	if !strings.Contains(string(j), Redacted) {
		t.Errorf("JSON %s lacks the redaction marker", j)
	}
}

func TestReveal(t *testing.T) {
	b := []byte("abc")
	v := New(b)
	b[0] = 'x'
	if string(v.Reveal()) != "abc" {
		t.Fatal("New must copy its input")
	}
	if v.Len() != 3 || v.IsZero() || !v.Equal(FromString("abc")) || v.Equal(FromString("abd")) {
		t.Fatal("accessors disagree")
	}
	if !(Value{}).IsZero() {
		t.Fatal("zero Value is not zero")
	}
}

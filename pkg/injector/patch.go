package injector

import "strings"

// Op is one JSON patch (RFC 6902) operation. The injector only adds and
// replaces, at paths it computed from the pod it was sent, so fields of
// the pod that this build's k8s.io/api does not know are never touched.
type Op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// patch accumulates operations in the order the API server applies them.
type patch []Op

func (p *patch) add(path string, v any)     { *p = append(*p, Op{Op: "add", Path: path, Value: v}) }
func (p *patch) replace(path string, v any) { *p = append(*p, Op{Op: "replace", Path: path, Value: v}) }

// appendAll appends items to the list at path, creating it when the pod
// has none (JSON patch cannot append to a missing list).
func appendAll[T any](p *patch, path string, exists bool, items ...T) {
	if len(items) == 0 {
		return
	}
	if !exists {
		p.add(path, items)
		return
	}
	for _, it := range items {
		p.add(path+"/-", it)
	}
}

// setKey sets key in the map at path (labels, annotations), creating it
// when absent.
func setKey(p *patch, path string, m map[string]string, key, value string) {
	if m == nil {
		p.add(path, map[string]string{key: value})
		return
	}
	p.add(path+"/"+escape(key), value)
}

// escape makes s one JSON pointer token.
func escape(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

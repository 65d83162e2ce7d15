// Package clip bounds and sanitizes text that may come from a caller before it is written:
// into an answer, a log line or a Kubernetes Event. It is applied where those are written,
// so a field no one thought of is bounded all the same.
package clip

import (
	"reflect"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Max bounds one string of an answer, a log line or an Event: a result's message (which
// may quote a few names of the cluster, each up to 253 bytes) fits, and no caller can make
// a line of megabytes out of a field.
const Max = 1024

// String returns s as valid UTF-8 without control characters (each invalid byte and each
// control character becomes U+FFFD), in at most max bytes. When s does not fit, it is cut
// on a rune boundary and ends with a visible marker, "…(N bytes clipped)", N counting the
// bytes of s left out. A string that needs none of this is returned as it is.
func String(s string, max int) string {
	if len(s) <= max && clean(s) {
		return s
	}
	// Room for the marker with as many digits as it can have: the output never exceeds max.
	room := max - len(marker(len(s)))
	var b strings.Builder
	i := 0
	for i < len(s) {
		r, n := rune1(s[i:])
		if b.Len()+utf8.RuneLen(r) > room {
			break
		}
		b.WriteRune(r)
		i += n
	}
	if rest := s[i:]; rest != "" {
		if b.Len()+sanitizedLen(rest) <= max {
			// The end fits in the room the marker would take: no need to cut.
			for _, r := range rest {
				b.WriteRune(sanitize(r))
			}
		} else {
			b.WriteString(marker(len(rest)))
		}
	}
	return b.String()
}

func marker(n int) string { return "…(" + strconv.Itoa(n) + " bytes clipped)" }

// clean reports whether s is valid UTF-8 without control characters.
func clean(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsControl) < 0
}

// rune1 is the first rune of s as String writes it, and how many bytes of s it takes.
func rune1(s string) (rune, int) {
	r, n := utf8.DecodeRuneInString(s)
	return sanitize(r), n
}

func sanitize(r rune) rune {
	if unicode.IsControl(r) {
		return utf8.RuneError
	}
	return r
}

func sanitizedLen(s string) int {
	n := 0
	for _, r := range s {
		n += utf8.RuneLen(sanitize(r))
	}
	return n
}

// maxDepth bounds how deep Strings looks into a value: deeper parts (and cycles) are kept
// as they are.
const maxDepth = 32

// Strings returns a copy of v with every string in it (struct fields, elements, map keys
// and values, named string types included) passed through String with max. It is how an
// answer's value and a log field's are bounded whatever their type; only exported struct
// fields are changed.
func Strings[T any](v T, max int) T {
	rv := reflect.ValueOf(&v).Elem()
	out, ok := clipValue(rv, max, 0).Interface().(T)
	if !ok {
		return v
	}
	return out
}

func clipValue(v reflect.Value, max, depth int) reflect.Value {
	if depth > maxDepth || !v.IsValid() {
		return v
	}
	switch v.Kind() {
	case reflect.String:
		s := String(v.String(), max)
		if s == v.String() {
			return v
		}
		out := reflect.New(v.Type()).Elem()
		out.SetString(s)
		return out
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		out := reflect.New(v.Type().Elem())
		out.Elem().Set(clipValue(v.Elem(), max, depth+1))
		return out
	case reflect.Interface:
		if v.IsNil() {
			return v
		}
		out := reflect.New(v.Type()).Elem()
		out.Set(clipValue(v.Elem(), max, depth+1))
		return out
	case reflect.Struct:
		out := reflect.New(v.Type()).Elem()
		out.Set(v)
		for i := range v.NumField() {
			if f := out.Field(i); f.CanSet() {
				f.Set(clipValue(v.Field(i), max, depth+1))
			}
		}
		return out
	case reflect.Slice:
		if v.IsNil() || v.Type().Elem().Kind() == reflect.Uint8 {
			return v // []byte is written as base64, which is safe
		}
		out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			out.Index(i).Set(clipValue(v.Index(i), max, depth+1))
		}
		return out
	case reflect.Array:
		out := reflect.New(v.Type()).Elem()
		for i := range v.Len() {
			out.Index(i).Set(clipValue(v.Index(i), max, depth+1))
		}
		return out
	case reflect.Map:
		if v.IsNil() {
			return v
		}
		out := reflect.MakeMapWithSize(v.Type(), v.Len())
		for it := v.MapRange(); it.Next(); {
			out.SetMapIndex(clipValue(it.Key(), max, depth+1), clipValue(it.Value(), max, depth+1))
		}
		return out
	}
	return v
}

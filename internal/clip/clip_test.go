package clip

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestString(t *testing.T) {
	tests := []struct {
		name string
		in   string
		max  int
		want string
	}{
		{"short and clean is kept", "checkout-api", 64, "checkout-api"},
		{"exactly max is kept", strings.Repeat("a", 64), 64, strings.Repeat("a", 64)},
		{"multi-byte runes are kept", "déploiement ✓", 64, "déploiement ✓"},
		{"invalid bytes are replaced", "a\xffb", 64, "a\uFFFDb"},
		{"control characters are replaced", "a\nb\x1b[31m", 64, "a\uFFFDb\uFFFD[31m"},
		{"too long is cut with a marker", strings.Repeat("a", 100), 64, strings.Repeat("a", 42) + "…(58 bytes clipped)"},
		{"invalid and too long", strings.Repeat("\xff", 100), 64, strings.Repeat("\uFFFD", 14) + "…(86 bytes clipped)"},
		{"a few bytes over that fit once sanitized are not cut", "abc\xff", 6, "abc\uFFFD"},
		{"cut on a rune boundary", strings.Repeat("é", 50), 40, strings.Repeat("é", 9) + "…(82 bytes clipped)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := String(tc.in, tc.max)
			if got != tc.want {
				t.Errorf("String(%q, %d) = %q; want %q", tc.in, tc.max, got, tc.want)
			}
			if len(got) > tc.max || !utf8.ValidString(got) {
				t.Errorf("String(%q, %d) = %q: %d bytes, valid UTF-8 %v", tc.in, tc.max, got, len(got), utf8.ValidString(got))
			}
		})
	}
}

// FuzzString: whatever the input, the output is valid UTF-8, free of control characters,
// within the bound, and the input itself when that is all of these already.
func FuzzString(f *testing.F) {
	for _, s := range []string{"", "abc", strings.Repeat("\xff", 300), "é\n\x00", strings.Repeat("日本", 100)} {
		f.Add(s, uint16(64))
	}
	f.Fuzz(func(t *testing.T, s string, max uint16) {
		m := int(max)%4096 + 32 // room for the marker
		got := String(s, m)
		if len(got) > m || !utf8.ValidString(got) || !clean(got) {
			t.Fatalf("String(%q, %d) = %q (%d bytes)", s, m, got, len(got))
		}
		if len(s) <= m && clean(s) && got != s {
			t.Fatalf("String(%q, %d) = %q; want it unchanged", s, m, got)
		}
	})
}

type inner struct {
	Name   string
	hidden string
}

type reason string

type value struct {
	Message string
	Reason  reason
	Notes   []string
	Labels  map[string]string
	Inner   *inner
	Any     any
	Count   int
}

// TestStrings: every string of a value is clipped, however deep and whatever its type; the
// original is left as it was.
func TestStrings(t *testing.T) {
	huge := strings.Repeat("\xff", 10<<10)
	in := value{
		Message: huge, Reason: reason(huge), Notes: []string{huge, "ok"},
		Labels: map[string]string{"pod": huge}, Inner: &inner{Name: huge, hidden: huge},
		Any: map[string]any{"k": []any{huge}}, Count: 3,
	}
	out := Strings(in, 64)
	all := []string{out.Message, string(out.Reason), out.Notes[0], out.Labels["pod"], out.Inner.Name,
		out.Any.(map[string]any)["k"].([]any)[0].(string)}
	for i, s := range all {
		if len(s) > 64 || !utf8.ValidString(s) || !strings.HasSuffix(s, "bytes clipped)") {
			t.Errorf("string %d = %q (%d bytes); want it clipped to 64 bytes", i, s, len(s))
		}
	}
	if out.Notes[1] != "ok" || out.Count != 3 || out.Inner.hidden != huge {
		t.Errorf("Strings() changed what needs no clipping: %q, %d, %d bytes", out.Notes[1], out.Count, len(out.Inner.hidden))
	}
	if in.Message != huge || in.Notes[0] != huge || in.Labels["pod"] != huge || in.Inner.Name != huge {
		t.Error("Strings() changed its argument")
	}
}

type names []string

func (n names) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for _, s := range n {
		enc.AppendString(s)
	}
	return nil
}

type obj struct{ s string }

func (o obj) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("s", o.s)
	enc.AddByteString("b", []byte(o.s))
	return enc.AddArray("a", names{o.s})
}

type stringer string

func (s stringer) String() string { return string(s) }

// TestCore: whatever the type of a field (and the message), a log entry written through Core
// carries only clipped, valid strings.
func TestCore(t *testing.T) {
	huge := strings.Repeat("\xff", 10<<10)
	inner, logs := observer.New(zap.InfoLevel)
	log := zap.New(inner, zap.WrapCore(Core)).With(zap.String("with", huge))
	log.Info(huge,
		zap.String("string", huge),
		zap.ByteString("bytes", []byte(huge)),
		zap.Error(errors.New(huge)),
		zap.Stringer("stringer", stringer(huge)),
		zap.Any("reflected", map[string]string{"k": huge}),
		zap.Strings("strings", []string{huge}),
		zap.Array("array", names{huge}),
		zap.Object("object", obj{huge}),
		zap.Inline(obj{huge}),
	)
	log.Debug(huge) // below the level: not written
	if got := logs.Len(); got != 1 {
		t.Fatalf("%d entries written; want 1", got)
	}
	e := logs.All()[0]
	check := func(path, s string) {
		if len(s) > Max || !utf8.ValidString(s) {
			t.Errorf("%s: %d bytes, valid UTF-8 %v; want at most %d valid bytes", path, len(s), utf8.ValidString(s), Max)
		}
	}
	check("message", e.Message)
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case string:
			check(path, v)
		case map[string]any:
			for k, x := range v {
				walk(path+"."+k, x)
			}
		case map[string]string:
			for k, x := range v {
				walk(path+"."+k, x)
			}
		case []any:
			for _, x := range v {
				walk(path+"[]", x)
			}
		case []string:
			for _, x := range v {
				walk(path+"[]", x)
			}
		}
	}
	m := e.ContextMap()
	if len(m) != 12 {
		t.Errorf("fields %v; want 12", m)
	}
	walk("", m)
}

// TestCoreKeepsSampling: the wrapped core still decides what is written; a sampler behind
// Core drops what it would drop alone, and what it writes is clipped.
func TestCoreKeepsSampling(t *testing.T) {
	var buf strings.Builder
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	sampled := zapcore.NewSamplerWithOptions(zapcore.NewCore(enc, zapcore.AddSync(&buf), zap.InfoLevel), time.Hour, 100, 1000)
	log := zap.New(sampled, zap.WrapCore(Core))
	huge := strings.Repeat("\xff", 10<<10)
	for range 150 {
		log.Info("refused", zap.String("error", huge))
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 100 {
		t.Errorf("%d lines written; want the sampler's 100", len(lines))
	}
	for _, l := range lines {
		if len(l) > 2*Max {
			t.Fatalf("line of %d bytes: %.200s…", len(l), l)
		}
	}
}

package clip

import (
	"fmt"

	"go.uber.org/zap/zapcore"
)

// Core wraps a zap core so that every entry it writes has its message and each string it
// carries passed through String with Max: string, byte string, error and Stringer fields,
// reflected values, and the strings of arrays and objects. Use it with zap.WrapCore; the
// wrapped core still decides what is written (level, sampling).
func Core(c zapcore.Core) zapcore.Core { return core{c} }

type core struct{ zapcore.Core }

func (c core) With(fs []zapcore.Field) zapcore.Core { return core{c.Core.With(fields(fs))} }

func (c core) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	// The wrapped core is asked (with an entry of its own, so a sampler counts this one),
	// but the entry is written through this core, which clips it first.
	if c.Core.Check(e, nil) == nil {
		return ce
	}
	return ce.AddCore(e, c)
}

func (c core) Write(e zapcore.Entry, fs []zapcore.Field) error {
	e.Message = String(e.Message, Max)
	return c.Core.Write(e, fields(fs))
}

// fields returns a clipped copy of fs: the caller may reuse its slice.
func fields(fs []zapcore.Field) []zapcore.Field {
	out := make([]zapcore.Field, len(fs))
	for i, f := range fs {
		switch f.Type {
		case zapcore.StringType:
			f.String = String(f.String, Max)
		case zapcore.ByteStringType:
			f = stringField(f.Key, func() string { return string(f.Interface.([]byte)) })
		case zapcore.ErrorType:
			f = stringField(f.Key, f.Interface.(error).Error)
		case zapcore.StringerType:
			f = stringField(f.Key, f.Interface.(fmt.Stringer).String)
		case zapcore.ReflectType:
			f.Interface = Strings(f.Interface, Max)
		case zapcore.ArrayMarshalerType:
			f.Interface = array{f.Interface.(zapcore.ArrayMarshaler)}
		case zapcore.ObjectMarshalerType, zapcore.InlineMarshalerType:
			f.Interface = object{f.Interface.(zapcore.ObjectMarshaler)}
		}
		out[i] = f
	}
	return out
}

// stringField is a string field of what text returns, clipped. An error or Stringer that
// panics (a nil pointer receiver) is written as zap writes it, "<nil>".
func stringField(key string, text func() string) (f zapcore.Field) {
	defer func() {
		if recover() != nil {
			f = zapcore.Field{Key: key, Type: zapcore.StringType, String: "<nil>"}
		}
	}()
	return zapcore.Field{Key: key, Type: zapcore.StringType, String: String(text(), Max)}
}

type array struct{ zapcore.ArrayMarshaler }

func (a array) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	return a.ArrayMarshaler.MarshalLogArray(arrayEncoder{enc})
}

type object struct{ zapcore.ObjectMarshaler }

func (o object) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	return o.ObjectMarshaler.MarshalLogObject(objectEncoder{enc})
}

// arrayEncoder and objectEncoder clip the strings that array and object marshalers write.
type arrayEncoder struct{ zapcore.ArrayEncoder }

func (e arrayEncoder) AppendString(s string)     { e.ArrayEncoder.AppendString(String(s, Max)) }
func (e arrayEncoder) AppendByteString(b []byte) { e.ArrayEncoder.AppendString(String(string(b), Max)) }
func (e arrayEncoder) AppendReflected(v any) error {
	return e.ArrayEncoder.AppendReflected(Strings(v, Max))
}
func (e arrayEncoder) AppendArray(m zapcore.ArrayMarshaler) error {
	return e.ArrayEncoder.AppendArray(array{m})
}
func (e arrayEncoder) AppendObject(m zapcore.ObjectMarshaler) error {
	return e.ArrayEncoder.AppendObject(object{m})
}

type objectEncoder struct{ zapcore.ObjectEncoder }

func (e objectEncoder) AddString(k, s string) { e.ObjectEncoder.AddString(k, String(s, Max)) }
func (e objectEncoder) AddByteString(k string, b []byte) {
	e.ObjectEncoder.AddString(k, String(string(b), Max))
}
func (e objectEncoder) AddReflected(k string, v any) error {
	return e.ObjectEncoder.AddReflected(k, Strings(v, Max))
}
func (e objectEncoder) AddArray(k string, m zapcore.ArrayMarshaler) error {
	return e.ObjectEncoder.AddArray(k, array{m})
}
func (e objectEncoder) AddObject(k string, m zapcore.ObjectMarshaler) error {
	return e.ObjectEncoder.AddObject(k, object{m})
}

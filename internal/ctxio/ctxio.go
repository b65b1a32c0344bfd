// Package ctxio makes long copies stop when their context ends.
package ctxio

import (
	"context"
	"io"
)

// Reader reads r until ctx is done, then fails every read with ctx's error,
// so an io.Copy of a multi-gigabyte disk stops within one buffer of a
// Ctrl-C.
func Reader(ctx context.Context, r io.Reader) io.Reader { return reader{ctx: ctx, r: r} }

type reader struct {
	ctx context.Context
	r   io.Reader
}

func (c reader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

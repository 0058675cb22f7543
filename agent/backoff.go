package agent

import (
	"math/rand/v2"
	"time"
)

// backoff yields exponentially growing delays between min and max, each
// jittered down by up to half ("equal jitter"), so a fleet of agents does not
// reconnect in lockstep after a controller restart.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
	rand     func(n int64) int64
}

func newBackoff(min, max time.Duration) *backoff {
	return &backoff{min: min, max: max, rand: rand.Int64N}
}

// next returns the next delay.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	}
	d := b.cur
	b.cur = min(b.cur*2, b.max)
	half := d / 2
	return half + time.Duration(b.rand(int64(d-half)+1))
}

// reset starts again at min.
func (b *backoff) reset() { b.cur = 0 }

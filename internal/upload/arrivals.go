package upload

import "sync"

// arrivals orders the requests that write the same chunk in place
// within this process, so that a failed arrival that a later one
// overtook leaves the later one's receipt alone.
//
// Without it, an arrival's outcome was recorded after its write had
// ended, and another arrival of the chunk could write and be recorded
// in between. On local disk, where the store lets one write of a chunk
// run at a time, a client cut off halfway that sent the chunk again met
// this: the whole copy was acknowledged, and the cut one, recorded after
// it and counted as touching the copy, marked the acknowledged chunk
// FAILED. Its bytes lay under the later copy's, which stood whole.
//
// An arrival begins when the store first reads its body. localfs holds
// the chunk's lock by then and until the write ends, so arrivals begin in
// the order they write, and the one that began last wrote last. A whole
// arrival records RECEIVED even when overtaken: a copy of the same bytes
// written over it leaves them as they were, and one of other bytes is
// caught when the file is read back against each chunk's CRC32C
// (docs/DESIGN.md, Invariant 4).
//
// On GCS (Deps.WholeChunkWrites) none of this is used: a part is
// replaced only by an upload that completes, so every failed arrival
// leaves a RECEIVED chunk as it is. Replicas share nothing in process
// anyway.
type arrivals struct {
	mu     sync.Mutex
	chunks map[chunkKey]*chunkArrivals
}

type chunkKey struct {
	uploadID string
	index    int
}

// chunkArrivals are one chunk's arrivals in flight.
type chunkArrivals struct {
	// mu is held to begin an arrival and while one records its outcome,
	// so no arrival begins between a record's check and its write.
	mu     sync.Mutex
	latest uint64 // the last arrival to begin; guarded by mu
	// inFlight counts the arrivals begun and not ended; guarded by
	// arrivals.mu.
	inFlight int
}

// arrival is one request's turn at a chunk.
type arrival struct {
	set   *arrivals
	key   chunkKey
	chunk *chunkArrivals
	seq   uint64
}

// begin starts an arrival of the chunk, as it starts writing it; end
// must follow.
func (a *arrivals) begin(uploadID string, index int) arrival {
	k := chunkKey{uploadID, index}
	a.mu.Lock()
	if a.chunks == nil {
		a.chunks = make(map[chunkKey]*chunkArrivals)
	}
	c := a.chunks[k]
	if c == nil {
		c = &chunkArrivals{}
		a.chunks[k] = c
	}
	c.inFlight++
	a.mu.Unlock()

	c.mu.Lock()
	c.latest++
	seq := c.latest
	c.mu.Unlock()
	return arrival{set: a, key: k, chunk: c, seq: seq}
}

// settle runs record, telling it whether an arrival of the chunk has
// begun since this one did. No arrival begins while it runs. An arrival
// that never began (the zero arrival) is never overtaken.
func (r arrival) settle(record func(overtaken bool) error) error {
	if r.chunk == nil {
		return record(false)
	}
	r.chunk.mu.Lock()
	defer r.chunk.mu.Unlock()
	return record(r.chunk.latest != r.seq)
}

// end ends the arrival, if it began.
func (r arrival) end() {
	if r.chunk == nil {
		return
	}
	r.set.mu.Lock()
	defer r.set.mu.Unlock()
	if r.chunk.inFlight--; r.chunk.inFlight == 0 {
		delete(r.set.chunks, r.key)
	}
}

package node

import (
	"context"
	"errors"
	"net/http"

	"github.com/rago-raft/rago/raftserver"
)

// handleBackup streams a backup of the cluster's state (raftserver's
// format: checksummed, verified by whoever restores it), taken through
// the leader so that it holds every write acknowledged before the
// request. A node whose member does not lead redirects to the leader's
// node. An error after the first byte cuts the stream: the client's check
// of the file then refuses it.
func (n *Node) handleBackup(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	out := &backupWriter{w: w}
	info, err := n.sys.Backup(ctx, n.self, out)
	if err == nil {
		n.log.Info("backup sent", "index", info.Index, "bytes", info.Bytes)
		return
	}
	if out.started {
		n.log.Warn("backup cut short", "err", err)
		panic(http.ErrAbortHandler)
	}
	var nl *raftserver.NotLeaderError
	if errors.Is(err, raftserver.ErrNotLocal) && errors.As(err, &nl) && !nl.Leader.IsZero() {
		if leader := n.directory(ctx)[nl.Leader.Name].HTTP; leader != "" {
			http.Redirect(w, r, leader+"/backup", http.StatusTemporaryRedirect)
			return
		}
	}
	n.fail(w, n.raftError(err, false))
}

// backupWriter sends the answer's headers with the first byte of the
// backup, so that an error before it can still be a JSON error.
type backupWriter struct {
	w       http.ResponseWriter
	started bool
}

func (b *backupWriter) Write(p []byte) (int, error) {
	if !b.started {
		b.started = true
		h := b.w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", `attachment; filename="kvstore.backup"`)
		h.Set("Cache-Control", "no-store")
		b.w.WriteHeader(http.StatusOK)
	}
	return b.w.Write(p)
}

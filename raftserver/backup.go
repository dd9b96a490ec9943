package raftserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/rago-raft/rago/internal/wire"
	"github.com/rago-raft/rago/meta"
	"github.com/rago-raft/rago/raftserver/core"
	"github.com/rago-raft/rago/snapshot"
)

// A backup is a snapshot stream (snapshot.Encoder: checksummed blocks, a
// trailer) of a machine's state, whose header names the index and term
// the state is at and whose meta blob is (wire format):
//
//	string "rago-backup" | u8 version (1) | string cluster |
//	string machine kind | uvarint machine version | varint created (Unix ms)
//
// Unlike a server's own snapshots it holds no members and no sessions: it
// is restored into a new cluster, whose members and clients are new.
const (
	backupMagic       = "rago-backup"
	backupMetaVersion = 1
)

// BackupInfo describes a backup.
type BackupInfo struct {
	// Cluster is the cluster the backup was taken from.
	Cluster string
	// Machine is the machine kind, and MachineVersion the machine version
	// the state was written by.
	Machine        string
	MachineVersion uint64
	// Index and Term are those of the last command the state includes.
	Index, Term uint64
	// Created is when the backup was taken.
	Created time.Time
	// Bytes is the size of the machine's state in the backup.
	Bytes int64
}

func encodeBackupMeta(i BackupInfo) []byte {
	b := wire.AppendString(nil, backupMagic)
	b = wire.AppendUint8(b, backupMetaVersion)
	b = wire.AppendString(b, i.Cluster)
	b = wire.AppendString(b, i.Machine)
	b = wire.AppendUvarint(b, i.MachineVersion)
	return wire.AppendVarint(b, i.Created.UnixMilli())
}

func decodeBackupMeta(meta []byte, h snapshot.Info) (BackupInfo, error) {
	r := wire.NewReader(meta)
	if magic := r.String(); r.Err() != nil || magic != backupMagic {
		return BackupInfo{}, fmt.Errorf("%w: not a rago backup (a server's own snapshot, or another file in the same format)", ErrInvalidBackup)
	}
	if v := r.Uint8(); r.Err() == nil && v != backupMetaVersion {
		return BackupInfo{}, fmt.Errorf("%w: backup format version %d; this code reads version %d", ErrInvalidBackup, v, backupMetaVersion)
	}
	i := BackupInfo{Cluster: r.String(), Machine: r.String(), MachineVersion: r.Uvarint(), Index: h.Index, Term: h.Term}
	i.Created = time.UnixMilli(r.Varint())
	if err := r.Done(); err != nil {
		return BackupInfo{}, fmt.Errorf("%w: backup description: %w", ErrInvalidBackup, err)
	}
	return i, nil
}

// openBackup reads a backup's header and description from r; the state
// follows in the returned reader, verified as it is read.
func openBackup(r io.Reader) (*snapshot.Reader, BackupInfo, error) {
	rd, err := snapshot.NewStreamReader(r, "backup")
	if err != nil {
		return nil, BackupInfo{}, fmt.Errorf("%w: %w", ErrInvalidBackup, err)
	}
	info, err := decodeBackupMeta(rd.Meta(), rd.Info())
	if err != nil {
		return nil, BackupInfo{}, err
	}
	return rd, info, nil
}

// ReadBackupInfo reads a whole backup from r, verifies every checksum, and
// describes it. It fails with ErrInvalidBackup for a damaged, truncated or
// foreign file.
func ReadBackupInfo(r io.Reader) (BackupInfo, error) {
	rd, info, err := openBackup(r)
	if err != nil {
		return BackupInfo{}, err
	}
	defer rd.Close()
	n, err := io.Copy(io.Discard, rd)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("%w: %w", ErrInvalidBackup, err)
	}
	info.Bytes = n
	return info, nil
}

// backupView is what a server hands to Backup: a view of its machine's
// state (src), or its newest durable snapshot (stored).
type backupView struct {
	info   BackupInfo
	src    snapshot.Source
	stored *snapshot.Reader
}

func (v *backupView) release() {
	if v.src != nil {
		v.src.Release()
	}
	if v.stored != nil {
		_ = v.stored.Close()
	}
}

// writeTo streams the state into enc, recovering a panicking source.
func (v *backupView) writeTo(enc io.Writer) (err error) {
	if v.stored != nil {
		_, err = io.Copy(enc, v.stored)
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: the machine's snapshot panicked: %v", ErrMachine, p)
		}
	}()
	_, err = v.src.WriteTo(enc)
	return err
}

// backupView runs on the server's goroutine, between two applies: if the
// last command applied released the log, the machine's state stands on
// its own there and a view of it is the backup; otherwise the newest
// durable snapshot is (a machine may be snapshotted only where it
// released the log).
func (s *server) backupView() (*backupView, error) {
	sn, ok := s.snapshotter()
	if !ok {
		return nil, fmt.Errorf("%w: machine %q is no Snapshotter, so it cannot be backed up", ErrMachine, s.cfg.Machine.Kind)
	}
	info := BackupInfo{Cluster: s.cfg.Cluster, Machine: s.cfg.Machine.Kind, MachineVersion: s.mh.version, Created: s.env.now()}
	if e := s.snap.released; e.Index > 0 && e.Index == s.applied {
		src, _, err := s.viewAt(sn, e)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMachine, err)
		}
		info.Index, info.Term = e.Index, e.Term
		return &backupView{info: info, src: src}, nil
	}
	if s.snap.info.Index == 0 {
		return nil, fmt.Errorf("%w: nothing to back up yet: the machine has not released the log since %s started, and it has no snapshot", ErrMachine, s.self)
	}
	rd, err := s.snaps.store.Open(s.snap.info)
	if err != nil {
		return nil, fmt.Errorf("%w: open snapshot %s: %w", ErrStorage, s.snap.info, err)
	}
	info.Index, info.Term, info.MachineVersion = s.snap.info.Index, s.snap.info.Term, s.snap.desc.MachineVersion
	return &backupView{info: info, stored: rd}, nil
}

// Backup writes a backup of a cluster's machine state to w and describes
// it. server must be the cluster's leader and on this node (ErrNotLocal
// otherwise; the error names the leader): it first confirms its
// leadership with a quorum, as a consistent query does, so the backup
// holds every command acknowledged before the call. The state is that
// of the last applied command if it released the log (a new leader's
// no-op after it keeps the release), else the leader's newest snapshot
// (BackupInfo.Index says which entry it ends with). The
// machine must be a Snapshotter. Commands go on while the state is
// written, as with any snapshot. A failing w ends it with w's error.
//
// The backup is a checksummed file that ReadBackupInfo verifies and
// RestoreCluster starts a new cluster from.
func (s *System) Backup(ctx context.Context, server ServerID, w io.Writer) (BackupInfo, error) {
	v, _, err := s.localQuery(ctx, server, func() *queryReq { return &queryReq{Kind: QueryConsistent, backup: true} })
	if err != nil {
		return BackupInfo{}, err
	}
	view := v.(*backupView)
	defer view.release()
	enc, err := snapshot.NewEncoder(w, view.info.Index, view.info.Term, encodeBackupMeta(view.info))
	if err != nil {
		return BackupInfo{}, fmt.Errorf("raftserver: write the backup: %w", err)
	}
	if err := view.writeTo(enc); err != nil {
		return BackupInfo{}, fmt.Errorf("raftserver: write the backup: %w", err)
	}
	written, err := enc.Close()
	if err != nil {
		return BackupInfo{}, fmt.Errorf("raftserver: write the backup: %w", err)
	}
	view.info.Bytes = written.DataSize
	return view.info, nil
}

// RestoreCluster starts a new cluster from a backup (see Backup) and
// waits until it leads. The member of members on this node (there must be
// one) starts with the backup's state as a cluster of its own; the others
// start empty and are added one by one (AddMember), receiving the state
// from it as a snapshot. It returns the members it started and those it
// could not start or add; the cluster runs with the ones it started, and
// the others can be added later with StartServer and AddMember.
//
// The whole backup is verified, and restored once into a scratch machine,
// before anything is created: a damaged, truncated or foreign file, a
// backup of another machine kind, or one written by a newer machine
// version fails with ErrInvalidBackup and leaves nothing behind. The
// cluster's log continues from the backup's index, so positions derived
// from log indexes (revisions) keep growing.
func (s *System) RestoreCluster(ctx context.Context, cluster string, machine MachineSpec, members []ServerID, backup io.Reader) (started, notStarted []ServerID, err error) {
	if err := checkNewCluster(cluster, members); err != nil {
		return nil, nil, err
	}
	first := -1
	for i, m := range members {
		if m.Node == s.Name() {
			first = i
			break
		}
	}
	if first < 0 {
		return nil, nil, fmt.Errorf("%w: RestoreCluster runs on the node of one of the members (%s hosts none of %v)", ErrInvalidConfig, s.Name(), members)
	}
	local := members[first]
	uid, err := s.preloadBackup(local, machine, backup)
	if err != nil {
		return nil, members, err
	}
	cfg := ServerConfig{ID: local, Cluster: cluster, Machine: machine, InitialMembers: []ServerID{local}}
	if err := s.systemCall(ctx, local.Node, &systemReq{Op: sysStart, Config: cfg, preloaded: uid}); err != nil {
		s.dropPreloaded(uid)
		return nil, members, err
	}
	if err := s.waitForLeader(ctx, []ServerID{local}); err != nil {
		others := append(append([]ServerID(nil), members[:first]...), members[first+1:]...)
		return []ServerID{local}, others, err
	}
	started = []ServerID{local}
	var errs []error
	for i, m := range members {
		if i == first {
			continue
		}
		err := s.StartServer(ctx, ServerConfig{ID: m, Cluster: cluster, Machine: machine})
		if err == nil {
			_, err = s.AddMember(ctx, local, m)
		}
		if err != nil {
			notStarted = append(notStarted, m)
			errs = append(errs, fmt.Errorf("member %s: %w", m, err))
			continue
		}
		started = append(started, m)
	}
	return started, notStarted, errors.Join(errs...)
}

// preloadBackup checks a backup and stores it as the only snapshot of a
// new server UID for local, with local as the only member, and the term
// the snapshot needs; it returns the UID.
func (s *System) preloadBackup(local ServerID, machine MachineSpec, backup io.Reader) (uid string, err error) {
	if _, ok := s.cfg.Machines[machine.Kind]; !ok {
		return "", fmt.Errorf("%w: %q on node %s", ErrUnknownMachine, machine.Kind, s.Name())
	}
	rd, info, err := openBackup(backup)
	if err != nil {
		return "", err
	}
	defer rd.Close()
	if info.Machine != machine.Kind {
		return "", fmt.Errorf("%w: it holds a %q machine, the cluster runs %q", ErrInvalidBackup, info.Machine, machine.Kind)
	}
	scratch, err := s.newMachine(machine)
	if err != nil {
		return "", err
	}
	supported := uint64(0)
	if v, ok := capability[Versioned](scratch); ok {
		supported = v.Version()
	}
	if info.MachineVersion > supported {
		return "", fmt.Errorf("%w: it was written by machine version %d, this code runs up to %d: upgrade it", ErrInvalidBackup, info.MachineVersion, supported)
	}
	sn, ok := capability[Snapshotter](scratch)
	if !ok {
		return "", fmt.Errorf("%w: machine %q is no Snapshotter, so it cannot be restored", ErrMachine, machine.Kind)
	}

	// The new member's first term is 1: a fresh log after the backup's
	// index, whatever terms the old cluster had reached.
	const term = 1
	uid = newUID(local.Name)
	desc := core.Snapshot{Index: info.Index, Term: term, Members: core.Membership{Voters: []ServerID{local}}, MachineVersion: info.MachineVersion}
	pend, err := s.snapshots.Begin(uid, info.Index, term, encodeSnapMeta(desc, newSessionTable(s.cfg.SessionTTLEntries, s.cfg.MaxSessions)))
	if err != nil {
		return "", fmt.Errorf("%w: store the backup: %w", ErrStorage, err)
	}
	if err := copyRestoring(pend, sn, rd); err != nil {
		pend.Abort()
		s.dropPreloaded(uid)
		return "", err
	}
	if _, err := pend.Commit(); err != nil {
		s.dropPreloaded(uid)
		return "", fmt.Errorf("%w: store the backup: %w", ErrStorage, err)
	}
	if err := s.meta.Put(uid, term, meta.ServerID{}); err != nil {
		s.dropPreloaded(uid)
		return "", fmt.Errorf("%w: record the restored member's term: %w", ErrStorage, err)
	}
	return uid, nil
}

// copyRestoring copies the backup's state into pend and, at the same
// time, restores it into a scratch machine, so that a state the machine
// cannot read is refused before a cluster is built on it.
func copyRestoring(pend io.Writer, sn Snapshotter, rd io.Reader) error {
	pr, pw := io.Pipe()
	restored := make(chan error, 1)
	go func() {
		err := restoreSafely(sn, pr)
		if err == nil {
			if n, _ := io.Copy(io.Discard, pr); n > 0 {
				err = fmt.Errorf("Restore left %d bytes unread", n)
			}
		}
		pr.CloseWithError(fmt.Errorf("the machine stopped reading: %v", err))
		restored <- err
	}()
	_, cerr := io.Copy(io.MultiWriter(pend, pw), rd)
	pw.CloseWithError(cerr) // nil: the machine sees io.EOF
	rerr := <-restored
	switch {
	case cerr != nil && errors.Is(cerr, snapshot.ErrCorrupt):
		return fmt.Errorf("%w: %w", ErrInvalidBackup, cerr)
	case rerr != nil:
		return fmt.Errorf("%w: the machine cannot restore it: %w", ErrInvalidBackup, rerr)
	case cerr != nil:
		return fmt.Errorf("%w: store the backup: %w", ErrStorage, cerr)
	}
	return nil
}

// dropPreloaded removes what preloadBackup stored for uid.
func (s *System) dropPreloaded(uid string) {
	if err := s.snapshots.Delete(uid); err != nil {
		s.logger.Warn("could not remove a restore's snapshot", "uid", uid, "err", err)
	}
	if err := s.meta.Delete(uid); err != nil {
		s.logger.Warn("could not remove a restore's term", "uid", uid, "err", err)
	}
}

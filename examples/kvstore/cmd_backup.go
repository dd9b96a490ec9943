package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rago-raft/rago/examples/internal/cli"
	"github.com/rago-raft/rago/examples/kvstore/internal/node"
	"github.com/rago-raft/rago/raftserver"
)

const backupHelp = `
Writes a backup of the cluster's data to FILE, taken through the leader: it
holds every write acknowledged before the command started. The file is
checksummed; it is written next to FILE first and renamed only once every
checksum verified, so FILE is never a partial backup.

	kvstore backup --out kv.backup

Start a new cluster from it with kvstore restore.`

func runBackup(args []string, stdout, stderr io.Writer) error {
	fs := prog.NewFlags("backup", stderr, backupHelp)
	cf := registerClientFlags(fs)
	out := fs.String("out", "", "`FILE` to write the backup to (required)")
	pos, err := cli.ParseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return cli.Usagef("unexpected argument %q", pos[0])
	}
	if *out == "" {
		return cli.Usagef("--out is required: the file to write the backup to")
	}
	c, ctx, cancel, err := cf.client()
	if err != nil {
		return err
	}
	defer cancel()
	partial := *out + ".partial"
	f, err := os.Create(partial)
	if err != nil {
		return err
	}
	defer os.Remove(partial) // a no-op once renamed
	err = c.Backup(ctx, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return explain(err)
	}
	f, err = os.Open(partial)
	if err != nil {
		return err
	}
	info, err := raftserver.ReadBackupInfo(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("the backup received does not verify; %s was not written: %w", *out, err)
	}
	if err := os.Rename(partial, *out); err != nil {
		return err
	}
	if cf.json {
		return printJSON(stdout, info)
	}
	fmt.Fprintf(stdout, "backup of cluster %q up to log index %d (%d bytes of data, taken %s) written to %s\n",
		info.Cluster, info.Index, info.Bytes, info.Created.Format(time.RFC3339), *out)
	return nil
}

const restoreHelp = `
Starts a new cluster from a backup (kvstore backup): runs one node, like
serve, whose member starts with the backup's data as a cluster of one. Add
more nodes with kvstore join --via this node. --data must hold no member yet;
restart the node later with serve and the same --data. The backup is
verified first: a damaged or foreign file is refused, and nothing starts.

	kvstore restore --from kv.backup --id n1 --raft 127.0.0.1:7101 \
	    --http 127.0.0.1:8101 --data d2/n1`

func runRestore(args []string, stdout, stderr io.Writer) error {
	fs := prog.NewFlags("restore", stderr, restoreHelp)
	var nf nodeFlags
	nf.register(fs)
	from := fs.String("from", "", "backup `FILE` written by kvstore backup (required)")
	pos, err := cli.ParseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return cli.Usagef("unexpected argument %q", pos[0])
	}
	if *from == "" {
		return cli.Usagef("--from is required: the backup file")
	}
	cfg, err := nf.config(stderr)
	if err != nil {
		return err
	}
	cfg.RestoreFrom = *from
	n, err := node.Start(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "node %s: restored from %s; web page and API at %s/\n", cfg.ID, *from, n.HTTPURL())
	return cli.ServeUntilSignal(n.Stop, cfg.Logger, parentEnv)
}

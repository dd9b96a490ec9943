#!/usr/bin/env bash
# Runs the command benchmark matrix of docs/benchmarks.md: both topologies,
# 16 B and 1 KiB commands, synchronous callers 1/64/512 and pipelined
# callers 1/8 x 1000 in flight. One summary line per run.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${DURATION:-10s}
bin=$(mktemp -d)/ragobench
go build -o "$bin" ./cmd/ragobench
for topology in inproc procs; do
	for payload in 16 1024; do
		for clients in 1 64 512; do
			"$bin" -topology "$topology" -mode sync -clients "$clients" -payload "$payload" -duration "$duration"
		done
		for clients in 1 8; do
			"$bin" -topology "$topology" -mode pipeline -clients "$clients" -inflight 1000 -payload "$payload" -duration "$duration"
		done
	done
done
rm -rf "$(dirname "$bin")"

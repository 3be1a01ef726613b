#!/bin/sh
# Stop a Prefect process worker so that every flow run it started ends with a state.
#
#   deploy/stop-worker.sh WORKER_PID [GRACE_SECONDS]      (default grace: 30 s)
#
# Why: on SIGTERM, `prefect worker start` (Prefect 3.9.1) cancels its runs by SIGKILLing
# their flow-run processes and exits within a second or two. The runs keep the state they
# had: the approval listener stays RUNNING (holding its deployment's only slot until the
# lease expires, up to 5 minutes), paused actions stay PAUSED. So the flow-run processes
# (the worker's children, each in a session of its own) get SIGTERM first: the listener
# finishes its poll and ends Completed, an action run ends Crashed at once (the
# reconciler then expires it, or continues it from the ledger when it was approved).
# Once they are gone, or after the grace period, the worker gets SIGTERM (it SIGKILLs
# any child still left); a worker still alive 15 s later is SIGKILLed, by PID.
# See README, "Deploying with a worker", and docs/workers.md.
#
# systemd:  ExecStop=/path/to/checkout/deploy/stop-worker.sh $MAINPID
set -u

worker=${1:?usage: stop-worker.sh WORKER_PID [GRACE_SECONDS]}
grace=${2:-30}

alive() {  # a zombie counts as gone: it has ended, only its parent has not reaped it yet
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$state" ] && [ "$state" != Z ]
}

children() {  # the worker's live children: its flow-run processes
    for pid in $(pgrep -P "$worker"); do
        if alive "$pid"; then echo "$pid"; fi
    done
}

alive "$worker" || exit 0
deadline=$(($(date +%s) + grace))
signalled=""
# Runs the worker starts meanwhile are children too: signal each new one as it appears.
while now=$(children) && [ -n "$now" ] && [ "$(date +%s)" -lt "$deadline" ]; do
    for pid in $now; do
        case " $signalled " in
        *" $pid "*) ;;
        *) kill -TERM "$pid" 2>/dev/null; signalled="$signalled $pid" ;;
        esac
    done
    sleep 0.2
done
# The worker SIGKILLs whatever children it still has, then exits; a worker that hangs is
# SIGKILLed after 15 s, its children first (while they are still known to be its own).
kill -TERM "$worker" 2>/dev/null
deadline=$(($(date +%s) + 15))
while alive "$worker" && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
if alive "$worker"; then
    for pid in $(children); do kill -KILL "$pid" 2>/dev/null; done
    kill -KILL "$worker" 2>/dev/null
fi
exit 0

"""The host loop around compiled dynamics blocks, shared by MD and surface hopping.

A compiled block advances every replica by ``frames × stride`` steps and returns the
sampled frames; everything that needs the host happens between blocks, here, in one order:

1. run the block from the current (last good) carry;
2. on neighbour-list overflow, reallocate from the block's *starting* positions and redo
   the block, so no step ever runs with a truncated list;
3. check the *new* state (what the block just computed, not the old one); if it is bad,
   save the last good state and raise :class:`BlowUpError` — the carry is only replaced
   by a state that passed the check;
4. record and write the frames, write a checkpoint every ``checkpoint_every`` blocks and at
   the end, report progress (at most every ``progress_every_s`` seconds, and at the end),
   and stop early when ``stop_when`` says so.

The carry is whatever the caller's block takes and returns (MD: the batched JAX-MD state
and neighbour lists; FSSH: the batched :class:`~qdyn.namd.fssh.FSSHState`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

#: reallocations after which an MD run is declared exploding
MAX_REALLOCATIONS = 100


class BlowUpError(RuntimeError):
    """The new state of a block is not finite or has blown up; the last good state was kept.

    Attributes:
        step: the step of the last good state.
        last_good_path: checkpoint file holding it (None when nothing was written).
        last_good_state: the last good (batched) state.
    """

    def __init__(self, message: str, *, step: int, last_good_path: Optional[Path], last_good_state):
        super().__init__(message)
        self.step = step
        self.last_good_path = last_good_path
        self.last_good_state = last_good_state


class LoopResult(NamedTuple):
    """What :func:`host_loop` returns.

    Attributes:
        carry: the final (good) carry.
        frames_done: frames in the run so far (restarted ones included).
        n_reallocations: neighbour-list reallocations (each redid a block).
    """

    carry: Any
    frames_done: int
    n_reallocations: int


def host_loop(
    carry,
    *,
    run_block: Callable,
    n_frames: int,
    frames_per_block: int,
    stride: int,
    check: Callable,
    record: Callable,
    what: str,
    hint: str,
    frames_done: int = 0,
    reallocate: Optional[Callable] = None,
    state_of: Callable = lambda carry: carry,
    save_last_good: Optional[Callable] = None,
    checkpoint: Optional[Callable] = None,
    checkpoint_every: int = 1,
    stop_when: Optional[Callable] = None,
    progress: Optional[Callable[[dict], None]] = None,
    progress_every_s: float = 5.0,
) -> LoopResult:
    """Run compiled blocks until ``n_frames`` frames are done (or ``stop_when``).

    Args:
        carry: the starting carry (a good state).
        run_block: ``(carry, frames) -> (new_carry, frames_out, overflowed: bool)``.
        n_frames: total frames of the run.
        frames_per_block: frames per block (the last block may be shorter).
        stride: steps per frame (for messages).
        check: ``(new_carry, frames_out) -> str | None``: what is wrong with the new state.
        record: ``(carry, frames_out, frames_done) -> dict``: keep / write the frames;
            returns the progress information of this block.
        what: name of the dynamics, for the blow-up message.
        hint: advice appended to the blow-up message.
        frames_done: frames already done (restart).
        reallocate: ``(carry, attempt) -> carry`` with new neighbour lists (attempt 1, 2, ...).
        state_of: the state inside a carry (attached to :class:`BlowUpError`).
        save_last_good: ``(carry, frames_done) -> Path | None``, called before raising.
        checkpoint: ``(carry, frames_done) -> None``, every ``checkpoint_every`` blocks and at
            the end.
        stop_when: ``(state) -> bool`` after each block; True ends the run early.
        progress: called with ``record``'s dict, or None for silence.
        progress_every_s: seconds between progress calls (the last block always reports).

    Returns:
        :class:`LoopResult`.

    Raises:
        BlowUpError: a block produced a bad state.
        RuntimeError: the neighbour list overflowed more than :data:`MAX_REALLOCATIONS` times.
    """
    n_realloc, blocks, t_last = 0, 0, -float("inf")
    while frames_done < n_frames:
        frames = min(int(frames_per_block), n_frames - frames_done)
        new_carry, out, overflowed = run_block(carry, frames)
        if overflowed:
            n_realloc += 1
            if n_realloc > MAX_REALLOCATIONS:
                raise RuntimeError(f"neighbour list overflowed {MAX_REALLOCATIONS} times; is the system exploding?")
            carry = reallocate(carry, n_realloc)
            continue
        bad = check(new_carry, out)
        if bad is not None:
            _blow_up(carry, frames_done, frames, stride, bad, what, hint, state_of, save_last_good)
        carry, frames_done, blocks = new_carry, frames_done + frames, blocks + 1
        info = record(carry, out, frames_done)
        finished = frames_done >= n_frames
        if checkpoint is not None and (blocks % checkpoint_every == 0 or finished):
            checkpoint(carry, frames_done)
        stop = stop_when is not None and bool(stop_when(state_of(carry)))
        now = time.perf_counter()
        if progress is not None and (now - t_last >= progress_every_s or finished or stop):
            t_last = now
            progress(info)
        if stop:
            break
    return LoopResult(carry, frames_done, n_realloc)


def _blow_up(carry, frames_done, frames, stride, bad, what, hint, state_of, save_last_good):
    step = frames_done * stride
    last = save_last_good(carry, frames_done) if save_last_good is not None else None
    where = (f"; last good state (step {step}) saved to {last}" if last else
             f"; last good state (step {step}) is attached to the error as .last_good_state")
    raise BlowUpError(f"{what} stopped in steps {step}..{step + frames * stride}: {bad}{where}. {hint}",
                      step=step, last_good_path=last, last_good_state=state_of(carry))

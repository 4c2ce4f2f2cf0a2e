//! The group on the thread transport: call checks (mismatch messages on
//! every rank, poisoned arguments, fusion bitwise the plain butterfly) and
//! the other collectives at awkward rank counts.

use super::*;
#[cfg(feature = "tools")]
use crate::element::DType;
use crate::transport::Counting;

const RANKS: [usize; 5] = [1, 2, 3, 5, 8];

#[test]
#[cfg(feature = "tools")]
fn fused_calls_are_bitwise_the_plain_calls_and_rabenseifner_the_butterfly() {
    // Checked butterfly and Rabenseifner calls carry the agreement in their
    // own messages (ranks apart); the result must not change by a bit, on
    // any p, type, op or count. Rabenseifner reduces by the butterfly's
    // tree, so its bits are the butterfly's too.
    fn run<T: crate::verify::VerifyElement>(
        p: usize,
        count: usize,
        op: ReduceOp,
        algorithm: Algorithm,
        checks: CheckConfig,
    ) -> Vec<u8> {
        let settings = Settings {
            checks,
            ..Settings::default()
        };
        let out = Local::run_apart(p, |ep| {
            let g = Group::with_settings(ep, settings);
            let case = crate::verify::Case {
                algorithm,
                dtype: T::DTYPE,
                op,
                count,
                seed: 3,
            };
            let mut v: Vec<T> = crate::verify::input(&case, g.rank());
            g.all_reduce_in_place(&mut v, op, algorithm).unwrap();
            v
        });
        out.iter()
            .flat_map(|x| bytemuck::cast_slice::<T, u8>(x).to_vec())
            .collect()
    }
    for p in [2, 3, 4, 5, 8] {
        for op in ReduceOp::ALL {
            for count in [1, p - 1, p + 1, 1000, FUSE_MAX / 8, FUSE_MAX / 8 + 1] {
                crate::with_dtype!(DType::ALL[(p + count) % DType::ALL.len()], T => {
                    let what = format!("p={p} {op} count={count} {}", T::DTYPE);
                    let butterfly = run::<T>(p, count, op, Algorithm::Butterfly, CheckConfig::default());
                    let plain = run::<T>(p, count, op, Algorithm::Butterfly, CheckConfig::OFF);
                    assert_eq!(butterfly, plain, "butterfly {what}");
                    let rabenseifner = run::<T>(p, count, op, Algorithm::Rabenseifner, CheckConfig::default());
                    assert_eq!(rabenseifner, butterfly, "rabenseifner {what}");
                    let plain = run::<T>(p, count, op, Algorithm::Rabenseifner, CheckConfig::OFF);
                    assert_eq!(plain, butterfly, "rabenseifner unchecked {what}");
                });
            }
        }
    }
}

#[test]
fn fused_calls_add_no_round() {
    // With the checks on, a small all-reduce costs exactly its algorithm's
    // rounds: the agreement travels in the same messages (butterfly, ranks
    // apart) or the same slots (shm, ranks sharing a node).
    for p in [2, 3, 4, 5, 8] {
        // the smallest and the largest butterfly call that rides along
        let cases = [
            (Algorithm::Butterfly, false, 16),
            (Algorithm::Butterfly, false, 4096), // 16 KiB, past the old limit (3.9 KiB)
            (Algorithm::Butterfly, false, FUSE_MAX / 4),
            (Algorithm::Rabenseifner, false, 16),
            (Algorithm::Rabenseifner, false, 16 << 10), // 64 KiB
            (
                Algorithm::Rabenseifner,
                false,
                crate::cost::FUSE_MAX_RABENSEIFNER / 4,
            ),
            (Algorithm::Shm, true, 16),
            (Algorithm::Shm, true, 1016),    // 4064 bytes: a whole slot
            (Algorithm::Shm, true, 1017),    // pieces
            (Algorithm::Shm, true, 300_000), // three pieces
        ];
        for (algorithm, shared, n) in cases {
            let rounds = |checks: CheckConfig| {
                let settings = Settings {
                    checks,
                    ..Settings::default()
                };
                let f = |ep| {
                    let g = Group::with_settings(Counting::new(ep), settings);
                    let mut v = vec![1.0f32; n];
                    g.all_reduce_in_place(&mut v, ReduceOp::Sum, algorithm).unwrap();
                    assert!(v.iter().all(|&x| x == p as f32));
                    g.transport().stats().rounds
                };
                match shared {
                    true => Local::run(p, f),
                    false => Local::run_apart(p, f),
                }
            };
            let (on, off) = (rounds(CheckConfig::default()), rounds(CheckConfig::OFF));
            assert_eq!(on, off, "{algorithm} p={p} n={n}");
            if algorithm == Algorithm::Shm && n <= 1016 {
                assert_eq!(on, vec![1; p], "one barrier");
            }
        }
    }
}

#[test]
fn fused_and_plain_frames_meet_when_ranks_disagree() {
    // Rank 1 sends a fused frame (small butterfly), the others plain ones,
    // and back; ranks apart (messages) and sharing a node (slots).
    for (p, shared) in [2, 3, 4, 5].into_iter().flat_map(|p| [(p, false), (p, true)]) {
        // Past the fusion limit: the others' calls pay a separate agreement.
        let big = FUSE_MAX / 8 + 1;
        let f = |ep| {
            let g = Group::new(ep);
            let n = if g.rank() == 1 { 3 } else { big };
            let mut v = vec![1.0f64; n];
            g.all_reduce_in_place(&mut v, ReduceOp::Sum, Algorithm::Butterfly)
                .unwrap_err()
                .to_string()
        };
        let out = if shared {
            Local::run(p, f)
        } else {
            Local::run_apart(p, f)
        };
        let want = rank_1_differs(p, "3 f64 sum butterfly", &format!("{big} f64 sum butterfly"));
        assert!(out.iter().all(|e| *e == want), "{out:?}");
    }
}

#[test]
fn the_largest_fused_frames_meet_the_smallest_and_write_nothing() {
    // Rank 1's call rides in the largest frame there is (a butterfly or a
    // whole Rabenseifner vector), the others' in the smallest or in none,
    // so its messages are up to 130 000 times longer than the buffers the
    // others' own calls need — and the other way round. Every rank returns
    // the same error, and no rank's buffer has been written.
    use crate::cost::FUSE_MAX_RABENSEIFNER;
    let (bf, rab) = (Algorithm::Butterfly, Algorithm::Rabenseifner);
    let cases = [
        ((bf, FUSE_MAX / 8), (bf, 1)),
        ((rab, FUSE_MAX_RABENSEIFNER / 8), (bf, 1)),
        ((rab, FUSE_MAX_RABENSEIFNER / 8), (Algorithm::Ring, 1 << 20)),
        ((rab, 1), (rab, FUSE_MAX_RABENSEIFNER / 8)),
    ];
    for ((a1, n1), (a, n)) in cases {
        for p in [2, 3, 4, 5, 8] {
            let out = Local::run_apart(p, |ep| {
                let g = Group::new(ep);
                let (algorithm, n) = if g.rank() == 1 { (a1, n1) } else { (a, n) };
                let mut v = vec![g.rank() as f64 + 0.5; n];
                let e = g
                    .all_reduce_in_place(&mut v, ReduceOp::Sum, algorithm)
                    .unwrap_err();
                assert!(
                    v.iter().all(|&x| x == g.rank() as f64 + 0.5),
                    "rank {} written",
                    g.rank()
                );
                // and the group goes on
                let mut w = vec![1i32; n];
                g.all_reduce_in_place(&mut w, ReduceOp::Sum, bf).unwrap_err();
                let mut w = vec![1i32; 1000];
                g.all_reduce_in_place(&mut w, ReduceOp::Sum, rab).unwrap();
                assert!(w.iter().all(|&x| x == p as i32));
                e.to_string()
            });
            let want = rank_1_differs(p, &format!("{n1} f64 sum {a1}"), &format!("{n} f64 sum {a}"));
            assert!(out.iter().all(|e| *e == want), "p={p} {out:?}");
        }
    }
}

#[test]
fn shared_memory_calls_of_any_size_meet_and_write_nothing() {
    // On one node the words ride in the first barrier of the `shm` call,
    // slot or pieces, or of the agreement before another algorithm. Rank
    // 1's call differs in size or algorithm, or its own arguments are bad:
    // every rank returns the same error after that one barrier, nothing of
    // any buffer is written, and the group goes on in step (its piece
    // buffers are chosen by barrier, so the next large call reads the
    // right ones).
    let (shm, bf) = (Algorithm::Shm, Algorithm::Butterfly);
    let big = 300_000; // three pieces
    let cases = [
        ((shm, big), (shm, 1)),
        ((shm, 1), (shm, big)),
        ((shm, 1017), (shm, 1016)),
        ((shm, big), (bf, 10)),
        ((bf, 10), (shm, big)),
    ];
    for (((a1, n1), (a, n)), in_place) in cases.into_iter().flat_map(|c| [(c, true), (c, false)]) {
        for p in [2, 3, 4, 5] {
            let out = Local::run(p, |ep| {
                let g = Group::new(ep);
                let (algorithm, n) = if g.rank() == 1 { (a1, n1) } else { (a, n) };
                let x = vec![g.rank() as f64 + 0.5; n];
                let mut v = vec![-1.0f64; n];
                let e = match in_place {
                    true => {
                        v.copy_from_slice(&x);
                        g.all_reduce_in_place(&mut v, ReduceOp::Sum, algorithm)
                    }
                    false => g.all_reduce(&x, &mut v, ReduceOp::Sum, algorithm),
                }
                .unwrap_err();
                let untouched = if in_place { g.rank() as f64 + 0.5 } else { -1.0 };
                assert!(v.iter().all(|&y| y == untouched), "rank {} written", g.rank());
                // and the group goes on: large, small, large
                for m in [big, 7, big + 3] {
                    let mut w = vec![1.0f32; m];
                    g.all_reduce_in_place(&mut w, ReduceOp::Sum, shm).unwrap();
                    assert!(w.iter().all(|&y| y == p as f32), "m={m}");
                }
                e.to_string()
            });
            let want = rank_1_differs(p, &format!("{n1} f64 sum {a1}"), &format!("{n} f64 sum {a}"));
            assert!(
                out.iter().all(|e| *e == want),
                "p={p} in_place={in_place} {out:?}"
            );
        }
    }
    // A bad argument on rank 1 of a large call: its own error there, the
    // same text from rank 1 everywhere else, nothing written.
    for p in [2, 3, 4] {
        let out = Local::run(p, |ep| {
            let g = Group::new(ep);
            let x = vec![1.0f32; if g.rank() == 1 { big - 1 } else { big }];
            let mut v = vec![-1.0f32; big];
            let e = g.all_reduce(&x, &mut v, ReduceOp::Sum, shm).unwrap_err();
            assert!(v.iter().all(|&y| y == -1.0), "rank {} written", g.rank());
            let mut w = vec![1.0f32; big];
            g.all_reduce_in_place(&mut w, ReduceOp::Sum, shm).unwrap();
            assert!(w.iter().all(|&y| y == p as f32));
            (g.rank(), e)
        });
        for (r, e) in out {
            let text = e.to_string();
            assert!(text.contains(&format!("{}", big - 1)), "rank {r}: {text}");
            assert_eq!(
                matches!(e, Error::Remote { rank: 1, .. }),
                r != 1,
                "rank {r}: {text}"
            );
        }
    }
}

/// The mismatch report of all-reduce #1 when rank 1 passed `one` and
/// every other of the `p` ranks passed `them` (at p = 2, groups of one:
/// by rank).
fn rank_1_differs(p: usize, one: &str, them: &str) -> String {
    let one = format!("rank 1 passed {one}");
    if p == 2 {
        return format!("all_reduce #1: rank 0 passed {them}, {one}");
    }
    let others = crate::error::rank_list(&(0..p).filter(|&r| r != 1).collect::<Vec<_>>());
    format!("all_reduce #1: {one}, {others} passed {them}")
}

#[test]
fn a_different_count_is_an_error_on_every_rank() {
    let out = Group::local(5, |g| {
        let n = if g.rank() == 3 { 1000 } else { 1024 };
        let mut v = vec![1.0f32; n];
        let e = g
            .all_reduce_in_place(&mut v, ReduceOp::Sum, Algorithm::Ring)
            .unwrap_err();
        // nothing moved: the buffer is untouched
        assert!(v.iter().all(|&x| x == 1.0));
        // and the group is still usable
        let mut w = vec![g.rank() as i32; 7];
        g.all_reduce_in_place(&mut w, ReduceOp::Sum, Algorithm::Ring)
            .unwrap();
        assert_eq!(w, vec![10; 7]);
        e.to_string()
    });
    let want = "all_reduce #1: rank 3 passed 1000 f32 sum ring, ranks 0-2, 4 passed 1024 f32 sum ring";
    assert!(out.iter().all(|e| e == want), "{out:?}");
}

#[test]
fn type_op_and_algorithm_differences_are_named() {
    let out = Group::local(3, |g| {
        let mut f = vec![0f32; 4];
        let mut i = vec![0i32; 4];
        let e1 = match g.rank() {
            1 => g.all_reduce_in_place(&mut i, ReduceOp::Sum, Algorithm::Ring),
            _ => g.all_reduce_in_place(&mut f, ReduceOp::Sum, Algorithm::Ring),
        };
        let op = if g.rank() == 0 {
            ReduceOp::Max
        } else {
            ReduceOp::Sum
        };
        let e2 = g.all_reduce_in_place(&mut f, op, Algorithm::Ring);
        let algo = if g.rank() == 2 {
            Algorithm::Naive
        } else {
            Algorithm::Butterfly
        };
        let e3 = g.all_reduce(&f.clone(), &mut f, ReduceOp::Sum, algo);
        [e1, e2, e3].map(|e| e.unwrap_err().to_string())
    });
    for e in &out {
        assert_eq!(
            e[0],
            "all_reduce #1: rank 1 passed 4 i32 sum ring, ranks 0, 2 passed 4 f32 sum ring"
        );
        assert_eq!(
            e[1],
            "all_reduce #2: rank 0 passed 4 f32 max ring, ranks 1, 2 passed 4 f32 sum ring"
        );
        assert_eq!(
            e[2],
            "all_reduce #3: rank 2 passed 4 f32 sum naive, ranks 0, 1 passed 4 f32 sum butterfly"
        );
    }
}

#[test]
fn a_skipped_call_shows_as_different_call_numbers() {
    let out = Group::local(2, |g| {
        if g.rank() == 1 {
            // rank 1 skips a call (its counter moves on, no call is made)
            g.calls.set(g.calls.get() + 1);
        }
        let mut v = [1u8; 3];
        g.all_reduce_in_place(&mut v, ReduceOp::Sum, Algorithm::Ring)
            .unwrap_err()
            .to_string()
    });
    let want = "all_reduce #1: rank 0 passed 3 u8 sum ring in all_reduce #1, \
                rank 1 passed 3 u8 sum ring in all_reduce #2";
    assert_eq!(out, vec![want.to_string(), want.to_string()]);
}

#[test]
fn another_collective_is_named_as_what_it_is() {
    let out = Group::local(3, |g| {
        let e = if g.rank() == 2 {
            g.barrier()
        } else {
            g.all_reduce_in_place(&mut [1.0f32; 2], ReduceOp::Sum, Algorithm::Ring)
        };
        e.unwrap_err().to_string()
    });
    let want = "all_reduce #1: rank 2 called barrier, ranks 0, 1 passed 2 f32 sum ring";
    assert!(out.iter().all(|e| e == want), "{out:?}");
}

#[test]
fn zero_counts_are_checked_too_and_checks_can_be_off() {
    let out = Group::local(2, |g| {
        let n = if g.rank() == 0 { 0 } else { 5 };
        let mut v = vec![1i32; n];
        g.all_reduce_in_place(&mut v, ReduceOp::Sum, Algorithm::Butterfly)
            .unwrap_err()
            .to_string()
    });
    assert!(
        out[0].starts_with("all_reduce #1: rank 0 passed 0 i32"),
        "{out:?}"
    );
    // With the checks off the same mistake reaches the transport.
    let off = Settings {
        checks: CheckConfig::OFF,
        ..Settings::default()
    };
    let out = Group::local_with(2, off, |g| {
        let n = if g.rank() == 0 { 4 } else { 5 };
        let mut v = vec![1i32; n];
        g.all_reduce_in_place(&mut v, ReduceOp::Sum, Algorithm::Butterfly)
            .map_err(|e| e.to_string())
    });
    assert!(
        out.iter().any(|r| matches!(r, Err(e) if e.contains("expected"))),
        "{out:?}"
    );
}

#[test]
fn an_argument_error_on_one_rank_reaches_every_rank_and_the_group_stays_in_step() {
    for p in [2, 3, 5] {
        let out = Group::local(p, |g| {
            let mut recv = vec![0.0f32; if g.rank() == 1 { 3 } else { 4 }];
            let e = g
                .all_reduce(&[1.0f32; 4], &mut recv, ReduceOp::Sum, Algorithm::Ring)
                .unwrap_err();
            // The next call pairs with the next call on every rank.
            let mut w = [1i32; 3];
            g.all_reduce_in_place(&mut w, ReduceOp::Sum, Algorithm::Ring)
                .unwrap();
            assert_eq!(w, [p as i32; 3]);
            e
        });
        for (r, e) in out.iter().enumerate() {
            if r == 1 {
                assert_eq!(*e, Error::LengthMismatch { send: 4, recv: 3 });
            } else {
                assert_eq!(
                    *e,
                    Error::Remote {
                        rank: 1,
                        reason: "send buffer has 4 elements but receive buffer has 3".into()
                    }
                );
            }
        }
    }
}

#[test]
fn broadcast_all_gather_and_agree_at_awkward_rank_counts() {
    for p in RANKS {
        let out = Group::local(p, |g| {
            let r = g.rank();
            // broadcast from every root, of an odd length
            for root in 0..p {
                let mut v: Vec<u64> = (0..7)
                    .map(|i| if r == root { (root * 100 + i) as u64 } else { 0 })
                    .collect();
                g.broadcast(&mut v, root).unwrap();
                assert_eq!(v, (0..7).map(|i| (root * 100 + i) as u64).collect::<Vec<_>>());
            }
            // fixed all-gather
            let mut all = vec![0i32; 3 * p];
            g.all_gather(&[r as i32; 3], &mut all).unwrap();
            assert_eq!(all, (0..p).flat_map(|q| [q as i32; 3]).collect::<Vec<_>>());
            // varying all-gather, some ranks empty
            let mine: Vec<u16> = (0..r % 3).map(|i| (10 * r + i) as u16).collect();
            let gathered = g.all_gather_varying(&mine).unwrap();
            for (q, v) in gathered.iter().enumerate() {
                assert_eq!(*v, (0..q % 3).map(|i| (10 * q + i) as u16).collect::<Vec<_>>());
            }
            // values through serde
            let names = g.all_gather_value(&format!("rank {r}")).unwrap();
            assert_eq!(names, (0..p).map(|q| format!("rank {q}")).collect::<Vec<_>>());
            let v = g
                .broadcast_value(p - 1, (r == p - 1).then_some(&(1.5f64, "x".to_string())))
                .unwrap();
            assert_eq!(v, (1.5, "x".to_string()));
            g.barrier().unwrap();
            // agree: all fine, then the last rank fails
            assert_eq!(g.agree(Ok(r)).unwrap(), r);
            let fails = r + 1 == p;
            let verdict = g.agree(if fails {
                Err(Error::InvalidArgument {
                    what: "data",
                    reason: format!("missing on rank {r}"),
                })
            } else {
                Ok(())
            });
            (fails, verdict)
        });
        for (r, (fails, verdict)) in out.into_iter().enumerate() {
            let e = verdict.unwrap_err();
            if fails {
                assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
            } else {
                assert_eq!(
                    e,
                    Error::Remote {
                        rank: p - 1,
                        reason: format!("invalid data: missing on rank {}", p - 1)
                    },
                    "p={p} rank {r}"
                );
            }
        }
    }
}

#[test]
fn bad_roots_and_lengths_are_errors_on_every_rank() {
    let out = Group::local(3, |g| {
        let e1 = g.broadcast(&mut [0u8; 2], 3).unwrap_err();
        let e2 = g.all_gather(&[1u8; 2], &mut [0u8; 5]).unwrap_err();
        let e3 = g.broadcast_value::<u32>(0, None).unwrap_err();
        // still in step
        g.barrier().unwrap();
        [e1, e2, e3].map(|e| e.to_string())
    });
    for e in &out {
        assert!(e[0].contains("rank 3 is out of range"), "{e:?}");
        assert!(e[1].contains("all_gather output"), "{e:?}");
        assert!(e[2].contains("no value to send"), "{e:?}");
    }
}

#[test]
fn settings_from_rank_0_reach_every_rank() {
    let forced = Settings {
        tuning: crate::cost::Tuning {
            force: Some(Algorithm::Central),
            ..Default::default()
        },
        checks: CheckConfig::OFF,
    };
    let out = Local::run(4, |ep| {
        let mine = if ep.rank() == 0 {
            Ok(forced)
        } else {
            Err(Error::InvalidArgument {
                what: "ignored",
                reason: "only rank 0's settings count".into(),
            })
        };
        let g = Group::with_rank0_settings(ep, mine).unwrap();
        (g.settings(), g.calls())
    });
    assert!(out.iter().all(|&(s, calls)| s == forced && calls == 0), "{out:?}");
    let out = Local::run(3, |ep| {
        let mine = if ep.rank() == 0 {
            Err(Error::InvalidArgument {
                what: "RINGREDUCE_CHECK",
                reason: "`maybe`".into(),
            })
        } else {
            Ok(Settings::default())
        };
        Group::with_rank0_settings(ep, mine)
            .map(drop)
            .unwrap_err()
            .to_string()
    });
    assert_eq!(out[0], "invalid RINGREDUCE_CHECK: `maybe`");
    assert_eq!(out[1], "rank 0: invalid RINGREDUCE_CHECK: `maybe`");
}

#[test]
fn auto_follows_new_settings() {
    // The group keeps auto's last answer; new settings must not reuse it.
    let out = Group::local(3, |g| {
        let mut v = [1.0f32; 64];
        g.all_reduce_in_place(&mut v, ReduceOp::Sum, Algorithm::Auto)
            .unwrap();
        let before = g.resolve(Algorithm::Auto, 64, 4);
        let mut s = g.settings();
        s.tuning.force = Some(Algorithm::Central);
        g.set_settings(s);
        (before, g.resolve(Algorithm::Auto, 64, 4))
    });
    for (before, after) in out {
        assert_ne!(before, Algorithm::Central);
        assert_eq!(after, Algorithm::Central);
    }
}

/// A mismatch under `Auto` names what the caller passed and what it
/// resolved to (`auto → shm`), and passing `Auto` on some ranks and the
/// algorithm it resolves to on others is a mismatch of its own.
#[test]
fn a_mismatch_under_auto_names_auto_and_what_it_resolved_to() {
    let out = Group::local(3, |g| {
        let n = if g.rank() == 1 { 1001 } else { 1000 };
        let mut v = vec![1.0f32; n];
        let e = g
            .all_reduce_in_place(&mut v, ReduceOp::Sum, Algorithm::Auto)
            .unwrap_err()
            .to_string();
        let (a, b) = (
            g.resolve(Algorithm::Auto, 1001, 4),
            g.resolve(Algorithm::Auto, 1000, 4),
        );
        let want = format!(
            "all_reduce #1: rank 1 passed 1001 f32 sum auto → {a}, ranks 0, 2 passed 1000 f32 sum auto → {b}"
        );
        assert_eq!(e, want);
        let resolved = g.resolve(Algorithm::Auto, 8, 4);
        let algorithm = if g.rank() == 0 { resolved } else { Algorithm::Auto };
        let mut w = vec![1.0f32; 8];
        let e = g
            .all_reduce_in_place(&mut w, ReduceOp::Sum, algorithm)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!("all_reduce #2: rank 0 passed 8 f32 sum {resolved}, ranks 1, 2 passed 8 f32 sum auto → {resolved}")
        );
        e
    });
    assert!(out.iter().all(|e| *e == out[0]));
}

/// The in-process transport keeps the stall timeout too: a rank that does
/// not join gets the waiting rank `Error::Stalled` after the timeout, not
/// a wait until it leaves (or forever).
#[test]
fn a_local_wait_without_progress_ends_at_the_timeout() {
    let settings = Settings {
        checks: CheckConfig {
            timeout: Some(std::time::Duration::from_millis(200)),
            ..CheckConfig::default()
        },
        ..Settings::default()
    };
    let out = Group::local_with(2, settings, |g| {
        if g.rank() == 1 {
            // Busy elsewhere for longer than the timeout, then gone.
            std::thread::sleep(std::time::Duration::from_millis(2000));
            return None;
        }
        let began = std::time::Instant::now();
        let mut v = vec![1f32; 8];
        let e = g
            .all_reduce_in_place(&mut v, ReduceOp::Sum, Algorithm::Ring)
            .unwrap_err();
        Some((e, began.elapsed()))
    });
    let (e, took) = out[0].as_ref().unwrap();
    assert!(matches!(e, Error::Stalled { rank: 0, .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "all_reduce #1: rank 0 received nothing for 0.2 s (a rank has not joined, or stalled)"
    );
    assert!(*took < std::time::Duration::from_millis(1500), "{took:?}");
}

#[test]
fn auto_takes_the_rule_of_the_groups_placement_on_every_rank() {
    use crate::cost::{Layout, Rule, Rules, Tuning};
    let rules = Rules::new(&[
        Rule {
            ranks: 4,
            per_node: 2,
            up_to: Some(64),
            algorithm: Algorithm::Central,
        },
        Rule {
            ranks: 4,
            per_node: 2,
            up_to: None,
            algorithm: Algorithm::Hierarchical,
        },
        Rule {
            ranks: 3,
            per_node: 0,
            up_to: None,
            algorithm: Algorithm::Naive,
        },
    ])
    .unwrap();
    let settings = Settings {
        tuning: Tuning {
            rules,
            ..Tuning::default()
        },
        ..Settings::default()
    };
    // 2 nodes × 2 ranks: every rank sees 2 per node and takes the rules,
    // and the calls they pick run and agree.
    let out = Local::run_nodes(2, 2, |ep| {
        let g = Group::with_settings(ep, settings);
        let mut small = vec![g.rank() as f32; 16];
        g.all_reduce_in_place(&mut small, ReduceOp::Sum, Algorithm::Auto)
            .unwrap();
        let mut large = vec![1.0f32; 1000];
        g.all_reduce_in_place(&mut large, ReduceOp::Sum, Algorithm::Auto)
            .unwrap();
        (
            g.layout(),
            g.resolve(Algorithm::Auto, 16, 4),
            g.resolve(Algorithm::Auto, 17, 4),
            small[0],
            large[999],
        )
    });
    for o in out {
        assert_eq!(
            o,
            (
                Layout {
                    per_node: 2,
                    shared: false
                },
                Algorithm::Central,
                Algorithm::Hierarchical,
                6.0,
                4.0
            )
        );
    }
    // Nodes of 2 and 1 ranks: 0 per node on every rank, the lone rank too.
    let eps = crate::transport::Local::endpoints_on(&[0, 0, 1]);
    let out = Local::run_on(eps, |ep| {
        let g = Group::with_settings(ep, settings);
        (g.layout().per_node, g.resolve(Algorithm::Auto, 8, 4))
    });
    assert_eq!(out, vec![(0, Algorithm::Naive); 3]);
    // One rank per node: the model, as without rules.
    let out = Local::run_on(Local::endpoints_apart(4), |ep| {
        let g = Group::with_settings(ep, settings);
        (g.layout(), g.resolve(Algorithm::Auto, 8, 4))
    });
    let model = Tuning::default().resolve_on(4, 8, 4, Layout::APART, true);
    assert_eq!(out, vec![(Layout::APART, model); 4]);
}

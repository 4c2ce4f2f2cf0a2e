//! Passes of serial SGD on the Hogwild! store or on plain `f32`s, for an
//! instruction count (`valgrind --tool=callgrind`, repeatable on a busy
//! machine where timings are not): the two stores run the same generic
//! code, so any difference is the store's.
//!
//! ```sh
//! cargo build --release --example hogwild_store
//! for store in atomic plain; do for passes in 0 4; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/hogwild_store $store $passes svm 2>&1 | grep Collected
//! done; done
//! ```

use std::cell::Cell;

use ringreduce::hogwild::{self, libsvm, Completion, Loss, Problem, Ratings, SparseLinear, Store};

fn passes<P: Problem>(p: &P, store: &str, passes: usize) -> f32 {
    let examples: Vec<u32> = (0..p.examples() as u32).collect();
    let init = p.init(1);
    match store {
        "atomic" => {
            let w = Store::from_slice(&init);
            for _ in 0..passes {
                hogwild::serial_pass(p, &w, &examples, 1e-3);
            }
            w.to_vec().iter().sum()
        }
        "plain" => {
            let w: Vec<Cell<f32>> = init.iter().copied().map(Cell::new).collect();
            for _ in 0..passes {
                hogwild::serial_pass(p, &w[..], &examples, 1e-3);
            }
            w.iter().map(Cell::get).sum()
        }
        other => {
            eprintln!("hogwild_store: store must be atomic or plain, not {other}");
            std::process::exit(2);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = || -> ! {
        eprintln!("usage: hogwild_store atomic|plain PASSES svm|mc");
        std::process::exit(2)
    };
    let (Some(store), Some(n), Some(problem)) = (args.get(1), args.get(2), args.get(3)) else {
        usage()
    };
    let Ok(n) = n.parse::<usize>() else { usage() };
    let sum = match problem.as_str() {
        "svm" => {
            let data = libsvm::synthetic(20_000, 47_000, 80, 0.65, 0.02, 7);
            passes(
                &SparseLinear::new(data, Loss::Hinge, 1e-4).expect("±1 labels"),
                store,
                n,
            )
        }
        "mc" => {
            let (train, _) = Ratings::synthetic(2_000, 2_000, 5, 100_000, 1, 0.01, 7).expect("valid sizes");
            passes(&Completion::new(train, 5, 1e-3).expect("valid rank"), store, n)
        }
        _ => usage(),
    };
    // The parameters' sum: the same for both stores (and keeps the passes).
    println!("{store} {problem} {n} passes: sum of parameters {sum}");
}

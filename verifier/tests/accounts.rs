//! Naming the account a leaked answer was served to: one 200-token answer
//! among 1,000,000 account keys derived on the fly, at family-wise 1e-6;
//! and no account named for text served to none of them.

mod support;

use support::{generate, random_tokens, Rng};
use tracemark_core::SchemeConfig;
use tracemark_verifier::accounts::{attribute_accounts, AccountForms};
use tracemark_verifier::DetectOptions;

const VOCAB: usize = 32_000;

fn label(i: u64) -> String {
    format!("account/{i}")
}

#[test]
fn one_answer_named_among_a_million_accounts() {
    let mut rng = Rng::new(0xacc0_0001);
    let master = rng.key();
    let config: SchemeConfig = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse().expect("scheme");
    let served_to = 777_777;
    let scheme = config
        .build(&master.derive(&label(served_to)).expect("derive"), VOCAB)
        .expect("build");
    // Sampling at temperature 1 from logits with a few dozen plausible tokens per step.
    let ids = generate(scheme.as_ref(), &[1, 2], 200, &mut rng, |_, r| {
        let mut row = vec![-20.0f32; VOCAB];
        for t in random_tokens(VOCAB, 40, r) {
            row[t as usize] = r.uniform() as f32 * 3.0;
        }
        row
    });
    let forms = AccountForms::ids(vec![1, 2], ids.clone());
    let found = attribute_accounts(
        &master,
        &config,
        VOCAB,
        &DetectOptions::default(),
        &forms,
        1_000_000,
        label,
    )
    .expect("scan");
    eprintln!(
        "1,000,000 accounts: {:.1} s, {:.0} keys/s, {:.2e} key-tokens/s; best log10 p {:.2} (needed < {:.2}), next {:.2}",
        found.seconds,
        found.keys_per_second,
        found.key_tokens_per_second,
        found.best[0].log10_p,
        found.log10_needed,
        found.best[1].log10_p
    );
    assert_eq!(found.accounts, 1_000_000);
    let named: Vec<&str> = found.named.iter().map(|m| m.label.as_str()).collect();
    assert_eq!(named, [label(served_to).as_str()]);
    assert!(found.named[0].log10_p_adjusted < -6.0);
    assert!((found.log10_needed - -12.0).abs() < 1e-9);
    // The runner-up is what chance gives the best of a million wrong keys: about 1e-6.
    assert!(found.best[1].log10_p > -9.0, "{}", found.best[1].log10_p);

    // Text served to no account: none is named, and the smallest of a million
    // p-values is about 1e-6, as it should be under the null.
    let human = random_tokens(VOCAB, 200, &mut rng);
    let forms = AccountForms::ids(vec![1, 2], human);
    let none = attribute_accounts(
        &master,
        &config,
        VOCAB,
        &DetectOptions::default(),
        &forms,
        200_000,
        label,
    )
    .expect("scan");
    assert!(none.named.is_empty(), "{:?}", none.named);
    assert!(none.best[0].log10_p_adjusted > -2.0);
}

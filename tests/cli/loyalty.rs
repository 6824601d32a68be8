//! The loyalty programme through the binary: accrual, idempotence,
//! redemptions and the statement, on hand-computed numbers.

use crate::support::{TestEnv, each_backend};

fn import(env: &TestEnv, what: &str, csv: &str) -> crate::support::Run {
    env.patron(&["import", what, &env.write(&format!("{what}.csv"), csv)])
}

fn ledger(env: &TestEnv) -> Vec<String> {
    env.strings(
        "SELECT c.external_id || ' ' || l.entry_kind || ' ' || CAST(l.points AS TEXT) || ' ' || l.source_key \
         FROM loyalty_ledger l JOIN customers c ON c.id = l.customer_id ORDER BY c.external_id, l.occurred_at, l.id",
    )
}

const ORDERS: &str = "order_id,customer_id,ordered_at,amount,category\n\
    O1,A,2025-03-01,120.50,music\n\
    O2,A,2025-04-01,200.00,books\n\
    O3,B,2025-05-01,80.00,music\n\
    O4,B,2026-01-01,10.00,music\n";

#[test]
fn recompute_earns_once_redemptions_are_checked_and_the_statement_adds_up() {
    each_backend(|env| {
        assert_eq!(import(env, "customers", "customer_id,email\nA,a@example.com\nB,b@example.com\n").code, 0);
        assert_eq!(import(env, "orders", ORDERS).code, 0);
        let settings = [("PATRON__LOYALTY__CATEGORY_MULTIPLIERS__BOOKS", "2")];
        let recompute = |as_of: &str| {
            let mut command = env.command(&["loyalty", "recompute", "--as-of", as_of]);
            command.envs(settings);
            let run = crate::support::Run::from(command.output().unwrap());
            assert_eq!(run.code, 0, "{}", run.stderr);
            run.stdout
        };
        // A: 120 + 200 × 2 = 520 points; 320.50 spent, below silver (500). B: 80 (O4 comes after the date).
        let first = recompute("2025-06-30");
        assert!(
            first.starts_with("2 members (2 new): 600 points earned, 0 expired; 0 upgrades, 0 downgrades"),
            "{first}"
        );
        assert_eq!(ledger(env), ["A earn 120 order:1", "A earn 400 order:2", "B earn 80 order:3"]);
        assert_eq!(
            env.strings("SELECT c.external_id || ' ' || a.tier FROM loyalty_accounts a JOIN customers c ON c.id = a.customer_id ORDER BY 1"),
            ["A member", "B member"]
        );

        // Importing the orders again and recomputing adds nothing.
        assert_eq!(import(env, "orders", ORDERS).code, 0);
        assert!(recompute("2025-06-30").contains(": 0 points earned, 0 expired;"));
        assert_eq!(ledger(env).len(), 3);

        // A redemption above the balance refuses the whole file.
        let refused = import(
            env,
            "redemptions",
            "redemption_id,customer_id,points,redeemed_at\nR1,A,100,2025-07-01\nR2,B,81,2025-07-01\n",
        );
        assert_eq!(refused.code, 2, "{}", refused.stderr);
        assert!(
            refused
                .stderr
                .contains("line 3: redemption `R2` of 81 points is above customer `B`'s balance of 80 points"),
            "{}",
            refused.stderr
        );
        assert_eq!(ledger(env).len(), 3, "nothing was imported");
        let accepted =
            import(env, "redemptions", "redemption_id,customer_id,points,redeemed_at\nR1,A,100,2025-07-01\n");
        assert_eq!(
            accepted.stdout,
            format!("{}: 1 redemptions read, 1 new, 0 already imported\n", env.path("redemptions.csv"))
        );
        let again = import(env, "redemptions", "redemption_id,customer_id,points,redeemed_at\nR1,A,100,2025-07-01\n");
        assert!(again.stdout.ends_with("1 redemptions read, 0 new, 1 already imported\n"), "{}", again.stdout);

        let show = env.ok(&["loyalty", "show", "A"]).stdout;
        assert!(show.starts_with("customer A: 420 points\ntier: member since "), "{show}");
        assert!(show.contains("  2025-07-01  redeem       -100  redemption:R1\n"), "{show}");
    });
}

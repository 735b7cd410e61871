//! Cluster mode on a real Redis Cluster (three primaries with one replica each), started by the
//! tests: the harness itself (keys in several slots, a primary killed and its replica promoted,
//! a slot moved with `redis-cli --cluster reshard`).
//! Run with `--nocapture` to see the failover and reshard figures.

mod cluster_support;
mod common;
mod support_nginx;

use std::collections::BTreeSet;

use cluster_support::RedisCluster;

// ---- the harness ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_cluster_harness_fails_over_and_reshards() {
    let mut rc = RedisCluster::start().await;
    let topo = rc.topology();
    assert_eq!(topo.len(), 6, "six nodes: {topo:?}");
    let primaries: Vec<_> = topo.iter().filter(|n| n.primary).collect();
    assert_eq!(primaries.len(), 3, "three primaries: {topo:?}");
    for p in &primaries {
        assert!(topo.iter().any(|r| r.primary_id.as_deref() == Some(&p.id)), "{} has a replica: {topo:?}", p.port);
    }

    // Keys of ten sessions (one hash tag each) land on every primary; `-c` follows redirects.
    let keys: Vec<String> = (0..10).map(|i| format!("mcpb:{{s{i}}}:rec")).collect();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(rc.cli(&["HSET", k, "owner", &format!("b{i}")]), "1", "HSET {k}");
    }
    let served_by: BTreeSet<u16> = keys.iter().map(|k| rc.primary_of(rc.slot_of(k)).port).collect();
    assert_eq!(served_by.len(), 3, "the keys are spread over the three primaries: {served_by:?}");
    assert_eq!(rc.slot_of("mcpb:{s3}:rec"), rc.slot_of("mcpb:{s3}:log:0"), "one session's keys share a slot");

    // Move the slot of one key with reshard: the key moves with it.
    let moved = rc.move_slot_of(&keys[1]).await;
    eprintln!(
        "RESHARD: slot {} moved {} -> {} ({} slots) in {} ms",
        moved.slot,
        moved.from,
        moved.to,
        moved.slots_moved,
        moved.took.as_millis()
    );
    assert_eq!(rc.primary_of(moved.slot).port, moved.to);
    assert_eq!(rc.cli(&["HGET", &keys[1], "owner"]), "b1", "the key moved with its slot");

    // Kill the primary of another key: its replica takes over with the data.
    let victim = rc.primary_of(rc.slot_of(&keys[2])).port;
    let (took, new) = rc.kill_primary_of(&keys[2]).await;
    eprintln!("FAILOVER: primary {victim} killed, replica {new} serves its slots after {} ms", took.as_millis());
    assert_ne!(new, victim);
    assert!(!rc.live_ports().contains(&victim));
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(rc.cli(&["HGET", k, "owner"]), format!("b{i}"), "{k} survived the failover");
    }

    // A reshard still works with the dead node in the cluster's table.
    let moved = rc.move_slot_of(&keys[4]).await;
    eprintln!(
        "RESHARD after failover: slot {} moved {} -> {} ({} slots) in {} ms",
        moved.slot,
        moved.from,
        moved.to,
        moved.slots_moved,
        moved.took.as_millis()
    );
    assert_eq!(rc.cli(&["HGET", &keys[4], "owner"]), "b4");
}

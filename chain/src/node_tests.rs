//! Node tests: production, resume, block import rules, fork recovery.

use super::*;
use zennet_protocol::tx::{Tx, TxBody};

#[test]
fn dev_node_produces_includes_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let g = dev_genesis(1, 1000);
    let mut n = Node::open(dir.path(), g.clone(), Some(dev_key(0))).unwrap();
    let k = dev_key(3);
    let to = dev_key(4).address();
    let t = Tx {
        chain_id: DEV_CHAIN_ID.into(),
        from: k.public(),
        nonce: 0,
        fee: Amount(1000),
        body: TxBody::Transfer {
            to,
            amount: Amount(5),
        },
    }
    .sign(&k);
    let h = n.mempool.admit(&n.ledger, t).unwrap();
    let b = n.maybe_produce(5_000).unwrap().unwrap();
    assert_eq!(b.txs.len(), 1);
    assert!(
        n.maybe_produce(5_500).unwrap().is_none(),
        "one block per slot"
    );
    assert!(n.maybe_produce(6_000).unwrap().is_some());
    assert_eq!(n.tip.height, 2);
    assert_eq!(n.tip.irreversible, 2, "one producer: irreversible at once");
    let r = n.store.receipt(&h).unwrap().unwrap();
    assert_eq!(r.height, 1);
    drop(n);
    let n = Node::open(dir.path(), g, Some(dev_key(0))).unwrap();
    assert_eq!(n.tip.height, 2);
    assert!(n.synced);
    assert_eq!(
        n.ledger.account(&to).balance,
        Amount::xen(1_000_000).checked_add(Amount(5)).unwrap()
    );
}

#[test]
fn imports_valid_blocks_and_refuses_conflicts_below_irreversible() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let g = dev_genesis(1, 1000);
    let mut a = Node::open(da.path(), g.clone(), Some(dev_key(0))).unwrap();
    let mut b = Node::open(db.path(), g.clone(), Some(dev_key(0))).unwrap();
    let b1 = a.maybe_produce(10_000).unwrap().unwrap();
    let b2 = a.maybe_produce(11_000).unwrap().unwrap();
    assert_eq!(b.import_block(&b2, 11_000).unwrap(), Imported::NeedSync(1));
    assert_eq!(b.import_block(&b1, 11_000).unwrap(), Imported::Applied);
    assert_eq!(b.import_block(&b1, 11_000).unwrap(), Imported::Known);
    assert_eq!(b.import_block(&b2, 11_000).unwrap(), Imported::Applied);
    assert_eq!(b.tip, a.tip);
    // a rival block at height 1 (another slot): height 1 is irreversible
    let dir = tempfile::tempdir().unwrap();
    let mut c = Node::open(dir.path(), g.clone(), Some(dev_key(0))).unwrap();
    let rival = c.maybe_produce(10_500_000).unwrap().unwrap();
    assert!(matches!(
        b.import_block(&rival, 10_500_000),
        Err(NodeError::Import(ImportError::BelowIrreversible { .. }))
    ));
    // a block from a key that does not own the slot
    let mut forged = b2.clone();
    forged.header.height = 3;
    forged.header.parent = b.tip.hash;
    forged.header.slot = 12;
    let forged = Block::seal(forged.header, vec![], &dev_key(1));
    assert!(matches!(
        b.import_block(&forged, 12_000),
        Err(NodeError::Import(ImportError::Invalid { .. }))
    ));
    // a tampered tx list
    let mut t = a.maybe_produce(12_000).unwrap().unwrap();
    let k = dev_key(3);
    t.txs.push(
        Tx {
            chain_id: DEV_CHAIN_ID.into(),
            from: k.public(),
            nonce: 0,
            fee: Amount(1000),
            body: TxBody::RegisterDelegate,
        }
        .sign(&k),
    );
    assert!(matches!(
        b.import_block(&t, 12_000),
        Err(NodeError::Import(ImportError::Invalid { .. }))
    ));
    // a block from the future
    let b3 = a.store.block(3).unwrap().unwrap();
    assert_eq!(b.import_block(&b3, 12_000).unwrap(), Imported::Applied);
    let fut = a.maybe_produce(20_000).unwrap().unwrap();
    assert!(matches!(
        b.import_block(&fut, 12_000),
        Err(NodeError::Import(ImportError::Invalid { .. }))
    ));
}

/// Delivers `b` to every node except `skip`.
fn gossip(nodes: &mut [Node], b: &Block, now: u64, skip: &[usize]) {
    for (i, n) in nodes.iter_mut().enumerate() {
        if !skip.contains(&i) && n.tip.height < b.header.height {
            n.import_block(b, now).unwrap();
        }
    }
}

#[test]
fn a_node_on_a_losing_branch_rewinds_and_follows_the_longer_one() {
    losing_branch(false);
}

#[test]
fn a_restarted_node_on_a_losing_branch_still_rewinds() {
    losing_branch(true);
}

/// X produces a block only it has, the others build a longer branch; X
/// (restarted in between if `restart`) rewinds to follow it.
fn losing_branch(restart: bool) {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let g = dev_genesis(4, 1000);
    let mut nodes: Vec<Node> = (0..4)
        .map(|i| Node::open(dirs[i].path(), g.clone(), Some(dev_key(i))).unwrap())
        .collect();
    let schedule = dpos::schedule(&nodes[0].ledger);
    let owner = |slot: u64| {
        (0..4)
            .find(|i| dev_key(*i).address() == schedule[(slot % 4) as usize])
            .unwrap()
    };
    // slots 100..=107: everyone hears everything
    for slot in 100..108u64 {
        let now = slot * 1000;
        let b = nodes[owner(slot)].maybe_produce(now).unwrap().unwrap();
        gossip(&mut nodes, &b, now, &[owner(slot)]);
    }
    let lib = nodes[0].tip.irreversible;
    assert!(lib >= 5, "lib {lib}");
    // slot 108: its producer X is cut off; it has a tx only it includes
    let x = owner(108);
    let k = dev_key(9);
    let t = Tx {
        chain_id: DEV_CHAIN_ID.into(),
        from: k.public(),
        nonce: 0,
        fee: Amount(1000),
        body: TxBody::RegisterDelegate,
    }
    .sign(&k);
    {
        let n = &mut nodes[x];
        n.mempool.admit(&n.ledger, t.clone()).unwrap();
    }
    let lost = nodes[x].maybe_produce(108_000).unwrap().unwrap();
    // slots 109, 110: the others build without it
    let mut branch = Vec::new();
    for slot in 109..111u64 {
        let now = slot * 1000;
        let b = nodes[owner(slot)].maybe_produce(now).unwrap().unwrap();
        gossip(&mut nodes, &b, now, &[owner(slot), x]);
        branch.push(b);
    }
    if restart {
        let tip = nodes[x].tip.clone();
        drop(nodes.remove(x));
        nodes.insert(x, Node::open(dirs[x].path(), g.clone(), Some(dev_key(x))).unwrap());
        let n = &mut nodes[x];
        assert_eq!(n.tip, tip);
        n.mempool.admit(&n.ledger, t.clone()).unwrap_err(); // already included
    }
    // X hears the longer branch: the equal-height rival is refused, the next one rewinds it
    assert!(matches!(
        nodes[x].import_block(&branch[0], 111_000),
        Err(NodeError::Import(ImportError::Fork { .. }))
    ));
    let Imported::NeedSync(from) = nodes[x].import_block(&branch[1], 111_000).unwrap() else {
        panic!("expected a rewind")
    };
    assert!(
        from <= lost.header.height && from > lib,
        "rewound to {from}, never below irreversible {lib}"
    );
    assert!(!nodes[x].synced);
    assert!(
        nodes[x].store.receipt(&t.hash()).unwrap().is_none(),
        "receipt of the dropped block is gone"
    );
    assert!(
        nodes[x].mempool.get(&t.hash()).is_some(),
        "its tx is back in the mempool"
    );
    let other = (x + 1) % 4;
    for h in from..=nodes[other].tip.height {
        let b = nodes[other].store.block(h).unwrap().unwrap();
        assert_eq!(
            nodes[x].import_block(&b, 111_000).unwrap(),
            Imported::Applied
        );
    }
    assert_eq!(nodes[x].tip, nodes[other].tip);
    assert_eq!(nodes[x].ledger.accounts, nodes[other].ledger.accounts);
    assert!(nodes[x].tip.irreversible >= lib);
    // and the rewound state is what is stored
    let tip = nodes[x].tip.clone();
    drop(nodes);
    let n = Node::open(dirs[x].path(), g, Some(dev_key(x))).unwrap();
    assert_eq!(n.tip, tip);
    assert_eq!(n.store.block(tip.height + 1).unwrap(), None);
}

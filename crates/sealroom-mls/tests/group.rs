//! Members of one MLS group deriving SFrame keys: agreement within an epoch, removal,
//! concurrent commits ordered first-wins, and hostile bytes refused.

use sealroom_mls::{Commit, MlsError, MlsMember, MlsOpener, MlsOpenerConfig};

/// Everyone applies `commit` except its author, who confirms it.
fn deliver(members: &mut [MlsMember], author: usize, commit: &Commit) {
    for (i, member) in members.iter_mut().enumerate() {
        if i == author {
            member.confirm_commit().expect("author confirms");
        } else if member.in_group() {
            member
                .handle_commit(&commit.commit)
                .expect("member applies");
        }
    }
}

/// A group of `n` members, built by external joins in order.
fn group(n: usize) -> Vec<MlsMember> {
    let mut members = vec![MlsMember::new("user-0").expect("member")];
    let mut info = members[0].create_group(b"room").expect("group");
    for i in 1..n {
        let mut newcomer = MlsMember::new(&format!("user-{i}")).expect("member");
        let commit = newcomer.join_external(&info).expect("joins");
        members.push(newcomer);
        deliver(&mut members, i, &commit);
        info = commit.group_info;
    }
    members
}

fn base_keys(members: &[MlsMember]) -> Vec<Option<(u64, Vec<u8>)>> {
    members
        .iter()
        .map(|m| {
            let keys = m.epoch_keys().ok()?;
            // Seal one fixed frame under leaf 0, context 0: equal output means equal keys.
            let mut sealer = keys.sealer(0, 0)?;
            let mut out = Vec::new();
            sealer.seal(b"m", b"probe", &mut out).ok()?;
            Some((keys.epoch(), out))
        })
        .collect()
}

#[test]
fn members_of_one_epoch_derive_identical_keys_and_every_commit_changes_them() {
    let mut members = group(4);
    let first = base_keys(&members);
    assert!(first.iter().all(|k| k.is_some() && *k == first[0]));
    assert_eq!(first[0].as_ref().map(|k| k.0), Some(3));
    let commit = members[2].update().expect("update");
    deliver(&mut members, 2, &commit);
    let second = base_keys(&members);
    assert!(second.iter().all(|k| *k == second[0]));
    assert_ne!(second[0], first[0]);
    let users: Vec<String> = members[0].members().into_iter().map(|m| m.user).collect();
    assert_eq!(users, ["user-0", "user-1", "user-2", "user-3"]);
}

#[test]
fn a_removed_member_derives_nothing_for_the_next_epoch() {
    let mut members = group(3);
    let leaf = members[1].leaf_index().expect("leaf");
    let before = members[1].epoch_keys().expect("keys");
    let commit = members[0].remove(&[leaf]).expect("remove");
    members[0].confirm_commit().expect("accepted");
    let change = members[1].handle_commit(&commit.commit).expect("applies");
    assert!(!change.still_member);
    members[2].handle_commit(&commit.commit).expect("applies");
    assert!(matches!(members[1].epoch_keys(), Err(MlsError::NoGroup)));

    // A frame of the new epoch opens for the remaining members and not for the removed
    // one, whatever old key it holds.
    let keys = members[0].epoch_keys().expect("keys");
    let mut sealer = keys.sealer(0, 0).expect("fits");
    let mut frame = Vec::new();
    sealer
        .seal(b"m", b"after removal", &mut frame)
        .expect("sealed");
    let mut member = MlsOpener::new(
        members[2].epoch_keys().expect("keys"),
        MlsOpenerConfig::default(),
    );
    assert!(member.open(b"m", &frame, &mut Vec::new()).is_ok());
    let mut removed = MlsOpener::new(before, MlsOpenerConfig::default());
    assert!(removed.open(b"m", &frame, &mut Vec::new()).is_err());
    // Nor can it follow later commits.
    let next = members[0].update().expect("update");
    assert!(members[1].handle_commit(&next.commit).is_err());
}

#[test]
fn concurrent_commits_one_wins_the_loser_applies_it_and_nobody_diverges() {
    let mut members = group(3);
    let a = members[1].update().expect("a");
    let b = members[2].update().expect("b");
    assert_eq!(a.epoch, b.epoch);
    // The delivery service took `a` first: `b` is refused.
    members[1].confirm_commit().expect("winner");
    members[0].handle_commit(&a.commit).expect("applies");
    members[2]
        .handle_commit(&a.commit)
        .expect("loser applies the winner");
    members[2].discard_commit();
    let keys = base_keys(&members);
    assert!(keys.iter().all(|k| k.is_some() && *k == keys[0]));
    // The loser rebases: its change again, on the new epoch.
    let again = members[2].update().expect("rebased");
    assert_eq!(again.epoch, a.epoch + 1);
    deliver(&mut members, 2, &again);
    let keys = base_keys(&members);
    assert!(keys.iter().all(|k| *k == keys[0]));
}

#[test]
fn a_rejoin_by_external_commit_replaces_the_members_old_leaf() {
    let mut members = group(3);
    // Member 2 misses a commit and cannot apply the next one.
    let missed = members[0].update().expect("update");
    members[0].confirm_commit().expect("ok");
    members[1].handle_commit(&missed.commit).expect("ok");
    let next = members[1].update().expect("update");
    members[1].confirm_commit().expect("ok");
    members[0].handle_commit(&next.commit).expect("ok");
    assert!(members[2].handle_commit(&next.commit).is_err());
    // It rejoins from the latest group info with the same signing key.
    let rejoin = members[2].join_external(&next.group_info).expect("rejoins");
    deliver(&mut members, 2, &rejoin);
    assert_eq!(members[0].members().len(), 3, "the old leaf was removed");
    let keys = base_keys(&members);
    assert!(keys.iter().all(|k| k.is_some() && *k == keys[0]));
}

#[test]
fn hostile_bytes_are_refused_and_leave_the_group_as_it_was() {
    let mut members = group(2);
    let epoch = members[0].epoch();
    for garbage in [&b""[..], b"\x00\x01", &[0xff; 300][..]] {
        assert!(matches!(
            members[0].handle_commit(garbage),
            Err(MlsError::Malformed(_))
        ));
        let mut newcomer = MlsMember::new("newcomer").expect("member");
        assert!(matches!(
            newcomer.join_external(garbage),
            Err(MlsError::Malformed(_))
        ));
    }
    // A commit from another group does not apply.
    let mut other = group(2);
    let foreign = other[0].update().expect("update");
    assert!(members[0].handle_commit(&foreign.commit).is_err());
    assert_eq!(members[0].epoch(), epoch);
    let keys = base_keys(&members);
    assert!(keys.iter().all(|k| k.is_some() && *k == keys[0]));
}

#[test]
fn credentials_carry_the_user_id_and_bad_ones_are_refused() {
    assert!(matches!(MlsMember::new(""), Err(MlsError::BadUserId(0))));
    assert!(matches!(
        MlsMember::new(&"x".repeat(256)),
        Err(MlsError::BadUserId(256))
    ));
    let members = group(2);
    let listed = members[1].members();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .any(|m| m.user == "user-1" && Some(m.leaf) == members[1].leaf_index())
    );
}

//! The CA set: no subject DN and key id pair shared by two keys, and the `ca_path`
//! directory as real OpenSSL (`openssl verify -CApath`, `openssl rehash`) reads it.

use testkit::capki;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capki::{issue, now, OrgPki, Spec, DAY};
use rlm_rust::stores::caset::{parse_hashed_name, CaSet, CaSetError};

const CAR54: &str = "car54._device.cars.example";

fn files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

/// `openssl verify -CApath dir [-untrusted u] leaf`: OpenSSL's own by-hash lookup.
fn openssl_verify(ca_path: &Path, untrusted: Option<&Path>, leaf: &Path) -> (bool, String) {
    let mut cmd = Command::new("openssl");
    cmd.arg("verify").arg("-CApath").arg(ca_path);
    // Only our directory: no system store.
    cmd.arg("-no-CAfile").arg("-no-CAstore");
    if let Some(u) = untrusted {
        cmd.arg("-untrusted").arg(u);
    }
    let out = cmd.arg(leaf).output().expect("run openssl verify");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success() && text.contains(": OK"), text)
}

#[test]
fn same_subject_and_key_id_with_another_key_is_refused_in_either_order() {
    let real = issue(&Spec::ca("Cars Org", "Cars Device CA"), None);
    let mut set = CaSet::new();
    set.insert(real.cert.clone()).unwrap();
    let impostor = issue(&Spec { ski: Some(real.ski()), ..Spec::ca("Cars Org", "Cars Device CA") }, None);
    let e = set.insert(impostor.cert.clone()).unwrap_err();
    assert!(matches!(e, CaSetError::IdentityCollision { .. }), "{e}");
    assert!(e.is_collision());
    assert!(e.to_string().contains(&rlm_rust::model::pki::dashed_hex(&real.ski())), "{e}");
    assert_eq!(set.len(), 1);

    // OpenSSL compares names case-insensitively with normalised spaces: so do we.
    let variant = issue(
        &Spec {
            ski: Some(real.ski()),
            ..Spec::ca("x", "x").subject(&[("C", "SE"), ("O", "CARS  org"), ("CN", "cars device ca")])
        },
        None,
    );
    assert!(matches!(set.insert(variant.cert.clone()), Err(CaSetError::IdentityCollision { .. })));
    assert_eq!(variant.cert.subject_name_hash(), real.cert.subject_name_hash(), "one hash for OpenSSL");
    // Order does not matter: the impostor first keeps the real one out.
    let mut set2 = CaSet::new();
    set2.insert(impostor.cert.clone()).unwrap();
    assert!(set2.insert(real.cert.clone()).unwrap_err().is_collision());
}

/// Two CAs that share only a DN, or only a key id, are told apart by OpenSSL (issuers are
/// looked up by DN, candidates matched by key id): both go in, and both their devices
/// verify against the written ca_path.
#[test]
fn a_shared_subject_or_a_shared_key_id_alone_is_no_collision() {
    let a = issue(&Spec::ca("Cars Org", "Cars Device CA"), None);
    let same_dn = issue(&Spec::ca("Cars Org", "Cars Device CA"), None);
    let same_id = issue(&Spec { ski: Some(a.ski()), ..Spec::ca("Meters Org", "Meters Device CA") }, None);
    let mut set = CaSet::new();
    for ca in [&a, &same_dn, &same_id] {
        set.insert(ca.cert.clone()).unwrap();
    }
    assert_eq!(set.len(), 3);
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca");
    set.write_ca_path(&ca_path).unwrap();
    for (i, ca) in [&a, &same_dn, &same_id].into_iter().enumerate() {
        let leaf = issue(&Spec::leaf("Devices", CAR54), Some(ca));
        let path = dir.path().join(format!("leaf{i}.pem"));
        std::fs::write(&path, leaf.pem()).unwrap();
        let (ok, text) = openssl_verify(&ca_path, None, &path);
        assert!(ok, "device of CA {i} does not verify:\n{text}");
    }
}

#[test]
fn same_key_reissued_is_accepted() {
    let key = capki::ec_key();
    let t = now();
    let v1 = issue(&Spec::ca("Cars Org", "Cars Device CA").key(&key).validity(t - 300 * DAY, t + 65 * DAY), None);
    let v2 = issue(&Spec::ca("Cars Org", "Cars Device CA").key(&key), None);
    let mut set = CaSet::new();
    set.insert(v1.cert.clone()).unwrap();
    set.insert(v2.cert.clone()).unwrap();
    set.insert(v2.cert.clone()).unwrap(); // the very same certificate: no-op
    assert_eq!(set.len(), 2);
    assert_eq!(set.get(&v1.ski()).len(), 2);
    assert!(set.contains(&v1.cert) && set.contains(&v2.cert));

    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca");
    set.write_ca_path(&ca_path).unwrap();
    let h = format!("{:08x}", v1.cert.subject_name_hash());
    assert_eq!(files(&ca_path), [format!("{h}.0"), format!("{h}.1")].into_iter().collect());
}

#[test]
fn non_ca_and_missing_key_id_are_refused() {
    let root = issue(&Spec::ca("Cars Org", "Cars Root"), None);
    let leaf = issue(&Spec::leaf("Cars Org", CAR54), Some(&root));
    let mut set = CaSet::new();
    assert!(matches!(set.insert(leaf.cert.clone()), Err(CaSetError::NotCa { .. })));
    let no_ski = issue(&Spec { ski: Some(vec![]), ..Spec::ca("Cars Org", "No SKI") }, None);
    assert!(matches!(set.insert(no_ski.cert.clone()), Err(CaSetError::NoKeyId { .. })));
    assert!(set.is_empty());
}

#[test]
fn insert_all_is_all_or_nothing() {
    let cars = OrgPki::new("Cars Org");
    let mut set = CaSet::new();
    set.insert(cars.root.cert.clone()).unwrap();
    let fresh = issue(&Spec::ca("Other Org", "Other CA"), None);
    let impostor = issue(&Spec { ski: Some(cars.root.ski()), ..Spec::ca("Cars Org", "Cars Org Root CA") }, None);
    let e = set.insert_all(&[fresh.cert.clone(), impostor.cert.clone()]).unwrap_err();
    assert!(e.is_collision());
    assert!(!set.contains(&fresh.cert), "a refused chain leaves nothing behind");
    set.insert_all(&[cars.intermediate.cert.clone(), cars.root.cert.clone()]).unwrap();
    assert_eq!(set.len(), 2);
}

#[test]
fn ca_path_is_what_openssl_verify_and_rehash_expect() {
    let dir = tempfile::tempdir().unwrap();
    let cars = OrgPki::new("Cars Org");
    let meters = OrgPki::new("Meters Org");
    let mut set = CaSet::new();
    set.insert_all(&[cars.intermediate.cert.clone(), cars.root.cert.clone()]).unwrap();
    let ca_path = dir.path().join("ca");
    let report = set.write_ca_path(&ca_path).unwrap();
    assert_eq!(report.written, 2);
    let names = files(&ca_path);
    assert_eq!(names.len(), 2, "{names:?}");
    for c in [&cars.root.cert, &cars.intermediate.cert] {
        assert!(names.contains(&format!("{:08x}.0", c.subject_name_hash())));
    }
    assert_eq!(std::fs::metadata(&ca_path).unwrap().permissions().mode() & 0o7777, 0o755);
    for n in &names {
        let m = std::fs::metadata(ca_path.join(n)).unwrap().permissions().mode();
        assert_eq!(m & 0o7777, 0o644, "{n}");
    }

    // OpenSSL finds intermediate and root by hash: a Cars device verifies...
    let leaf = cars.device("Cars Org", CAR54);
    let leaf_pem = dir.path().join("leaf.pem");
    std::fs::write(&leaf_pem, leaf.pem()).unwrap();
    let (ok, out) = openssl_verify(&ca_path, None, &leaf_pem);
    assert!(ok, "{out}");
    // ...a Meters device does not, even when it brings its own intermediate.
    let m_leaf = meters.device("Meters Org", "m1._device.meters.example");
    let m_pem = dir.path().join("m.pem");
    let m_chain = dir.path().join("m-chain.pem");
    std::fs::write(&m_pem, m_leaf.pem()).unwrap();
    std::fs::write(&m_chain, meters.intermediate.pem()).unwrap();
    let (ok, out) = openssl_verify(&ca_path, Some(&m_chain), &m_pem);
    assert!(!ok, "{out}");

    // `openssl rehash` on the same certificates names the files exactly as we do.
    let rehashed = dir.path().join("rehash");
    std::fs::create_dir(&rehashed).unwrap();
    std::fs::write(rehashed.join("root.pem"), cars.root.pem()).unwrap();
    std::fs::write(rehashed.join("int.pem"), cars.intermediate.pem()).unwrap();
    let st = Command::new("openssl").arg("rehash").arg(&rehashed).status().expect("openssl rehash");
    assert!(st.success());
    let theirs: BTreeSet<String> = files(&rehashed).into_iter().filter(|n| parse_hashed_name(n).is_some()).collect();
    assert_eq!(theirs, names);

    // The bundle: one file, atomically written, usable as -CAfile.
    let bundle = dir.path().join("ca-bundle.pem");
    set.write_bundle(&bundle).unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-no-CApath", "-no-CAstore", "-CAfile"])
        .arg(&bundle)
        .arg(&leaf_pem)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::metadata(&bundle).unwrap().permissions().mode() & 0o777, 0o644);
    assert_eq!(files(dir.path()).iter().filter(|n| n.starts_with('.')).count(), 0);
}

#[test]
fn rewrite_updates_in_place_without_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca");
    let a = issue(&Spec::ca("Org A", "A"), None);
    let b = issue(&Spec::ca("Org B", "B"), None);
    let c = issue(&Spec::ca("Org C", "C"), None);
    let mut first = CaSet::new();
    first.insert_all(&[a.cert.clone(), b.cert.clone()]).unwrap();
    first.write_ca_path(&ca_path).unwrap();
    // An operator's unrelated file and a temp file left by a crash.
    std::fs::write(ca_path.join("README"), b"not ours").unwrap();
    std::fs::write(ca_path.join(".rlm_rust-tmp.1.2"), b"half a cert").unwrap();

    let mut second = CaSet::new();
    second.insert_all(&[a.cert.clone(), c.cert.clone()]).unwrap();
    let report = second.write_ca_path(&ca_path).unwrap();
    assert_eq!((report.written, report.unchanged, report.removed), (1, 1, 1));
    let name = |x: &capki::Issued| format!("{:08x}.0", x.cert.subject_name_hash());
    let want: BTreeSet<String> = [name(&a), name(&c), "README".to_string()].into_iter().collect();
    assert_eq!(files(&ca_path), want);

    // Reload = what was written.
    let back = CaSet::from_ca_path(&ca_path).unwrap();
    assert_eq!(back.len(), 2);
    assert!(back.contains(&a.cert) && back.contains(&c.cert) && !back.contains(&b.cert));

    // Writing the same set again touches nothing.
    let report = second.write_ca_path(&ca_path).unwrap();
    assert_eq!((report.written, report.unchanged, report.removed), (0, 2, 0));
}

#[test]
fn removing_one_of_a_reissued_pair_never_moves_the_other() {
    let key = capki::ec_key();
    let v1 = issue(&Spec::ca("Cars Org", "Cars Device CA").key(&key), None);
    let v2 = issue(&Spec::ca("Cars Org", "Cars Device CA").key(&key), None);
    let h = format!("{:08x}", v1.cert.subject_name_hash());
    for keep in [&v1, &v2] {
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca");
        let read = |n: u32| std::fs::read(ca_path.join(format!("{h}.{n}"))).unwrap();
        let mut both = CaSet::new();
        both.insert_all(&[v1.cert.clone(), v2.cert.clone()]).unwrap();
        both.write_ca_path(&ca_path).unwrap();
        let keep_was_at_1 = read(1) == keep.pem();
        let mut one = CaSet::new();
        one.insert(keep.cert.clone()).unwrap();
        one.write_ca_path(&ca_path).unwrap();
        if keep_was_at_1 {
            // It stays at .1; .0 now holds a duplicate of it, so a scan running during
            // the update could never stop short of it.
            assert_eq!(files(&ca_path).len(), 2);
            assert_eq!((read(0), read(1)), (keep.pem(), keep.pem()));
        } else {
            assert_eq!(files(&ca_path), [format!("{h}.0")].into_iter().collect());
            assert_eq!(read(0), keep.pem());
        }
        // Still one CA as far as the set is concerned.
        assert_eq!(CaSet::from_ca_path(&ca_path).unwrap().len(), 1);
    }
}

/// While the writer flips between two sets sharing CAs, a reader doing OpenSSL's lookup
/// (`<hash>.0`, `.1`, ... until one is missing; every file must parse) always finds
/// every shared CA.
#[test]
fn concurrent_reader_always_finds_the_cas_that_stay() {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca");
    let key = capki::ec_key();
    // Shared: two re-issues of one CA (same hash bucket) and one other CA.
    let s1 = issue(&Spec::ca("Cars Org", "Shared CA").key(&key), None);
    let s2 = issue(&Spec::ca("Cars Org", "Shared CA").key(&key), None);
    let s3 = issue(&Spec::ca("Meters Org", "Meters CA"), None);
    // Churn: a third re-issue in the same bucket, and an unrelated CA.
    let x1 = issue(&Spec::ca("Cars Org", "Shared CA").key(&key), None);
    let x2 = issue(&Spec::ca("Other Org", "Other CA"), None);
    let mut set_a = CaSet::new();
    set_a.insert_all(&[x1.cert.clone(), s1.cert.clone(), s2.cert.clone(), s3.cert.clone()]).unwrap();
    let mut set_b = CaSet::new();
    set_b.insert_all(&[s2.cert.clone(), s3.cert.clone(), x2.cert.clone(), s1.cert.clone()]).unwrap();
    set_a.write_ca_path(&ca_path).unwrap();

    let shared: Vec<(u32, Vec<u8>)> =
        [&s1, &s2, &s3].iter().map(|c| (c.cert.subject_name_hash(), c.cert.to_der().unwrap())).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let lookups = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, lookups, dir) = (stop.clone(), lookups.clone(), ca_path.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                for (hash, der) in &shared {
                    let mut found = false;
                    for n in 0.. {
                        let Ok(pem) = std::fs::read(dir.join(format!("{hash:08x}.{n}"))) else {
                            break;
                        };
                        let cert = openssl::x509::X509::from_pem(&pem)
                            .unwrap_or_else(|e| panic!("half-written {hash:08x}.{n}: {e}"));
                        found |= cert.to_der().unwrap() == *der;
                    }
                    assert!(found, "shared CA {hash:08x} invisible mid-update");
                    lookups.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    // Run until both sides did enough work to interleave, however slow the machine's
    // fsync is; a reader that died (it saw a hidden or partial CA) ends the loop early.
    let give_up = Instant::now() + Duration::from_secs(120);
    let mut writes = 0;
    while (writes < 40 || lookups.load(Ordering::SeqCst) < 400) && !reader.is_finished() {
        assert!(Instant::now() < give_up, "writes {writes}, lookups {}", lookups.load(Ordering::SeqCst));
        set_b.write_ca_path(&ca_path).unwrap();
        set_a.write_ca_path(&ca_path).unwrap();
        writes += 2;
    }
    stop.store(true, Ordering::SeqCst);
    reader.join().expect("reader saw a hidden or partial CA");
}

#[test]
fn reload_refuses_a_planted_colliding_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca");
    let real = issue(&Spec::ca("Cars Org", "Cars Device CA"), None);
    let mut set = CaSet::new();
    set.insert(real.cert.clone()).unwrap();
    set.write_ca_path(&ca_path).unwrap();
    let impostor = issue(&Spec { ski: Some(real.ski()), ..Spec::ca("Cars Org", "Cars Device CA") }, None);
    let planted = ca_path.join(format!("{:08x}.1", impostor.cert.subject_name_hash()));
    std::fs::write(&planted, impostor.pem()).unwrap();
    let e = CaSet::from_ca_path(&ca_path).unwrap_err();
    assert!(e.is_collision(), "{e}");
    assert!(e.to_string().contains(&*planted.to_string_lossy()), "{e}");

    std::fs::write(&planted, b"<html>garbage</html>").unwrap();
    assert!(matches!(CaSet::from_ca_path(&ca_path), Err(CaSetError::Parse { .. })));
}

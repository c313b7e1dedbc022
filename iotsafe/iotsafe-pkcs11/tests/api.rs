//! The module's Cryptoki API driven directly (as libp11 would) against the
//! simulated card behind a real pcscd: object search, attributes, and
//! CKM_ECDSA signatures checked with OpenSSL for every input length.

use std::time::Duration;

use cryptoki_sys::*;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;

use iotsafe_sim::rig::{self, Pcscd};
use iotsafe_sim::{provision, Sim, SimConfig};

fn functions() -> &'static CK_FUNCTION_LIST {
    let mut p: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
    // SAFETY: valid out-pointer; the list is a static inside the module.
    unsafe {
        assert_eq!(iotsafe_pkcs11::C_GetFunctionList(&mut p), CKR_OK);
        &*p
    }
}

fn find(f: &CK_FUNCTION_LIST, session: CK_SESSION_HANDLE, class: CK_OBJECT_CLASS) -> Vec<CK_OBJECT_HANDLE> {
    let mut class = class;
    let mut tmpl = [CK_ATTRIBUTE {
        type_: CKA_CLASS,
        pValue: &mut class as *mut CK_ULONG as *mut std::ffi::c_void,
        ulValueLen: std::mem::size_of::<CK_ULONG>() as CK_ULONG,
    }];
    let mut out = [0 as CK_OBJECT_HANDLE; 16];
    let mut n: CK_ULONG = 0;
    // SAFETY: buffers outlive the calls; sizes passed match.
    unsafe {
        assert_eq!(f.C_FindObjectsInit.unwrap()(session, tmpl.as_mut_ptr(), 1), CKR_OK);
        assert_eq!(f.C_FindObjects.unwrap()(session, out.as_mut_ptr(), 16, &mut n), CKR_OK);
        assert_eq!(f.C_FindObjectsFinal.unwrap()(session), CKR_OK);
    }
    out[..n as usize].to_vec()
}

fn attr(
    f: &CK_FUNCTION_LIST,
    session: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    t: CK_ATTRIBUTE_TYPE,
) -> Option<Vec<u8>> {
    let mut a = CK_ATTRIBUTE { type_: t, pValue: std::ptr::null_mut(), ulValueLen: 0 };
    // SAFETY: first call sizes, second fills a buffer of that size.
    unsafe {
        if f.C_GetAttributeValue.unwrap()(session, obj, &mut a, 1) != CKR_OK {
            return None;
        }
        let mut buf = vec![0u8; a.ulValueLen as usize];
        a.pValue = buf.as_mut_ptr() as *mut std::ffi::c_void;
        assert_eq!(f.C_GetAttributeValue.unwrap()(session, obj, &mut a, 1), CKR_OK);
        buf.truncate(a.ulValueLen as usize);
        Some(buf)
    }
}

fn sign(
    f: &CK_FUNCTION_LIST,
    session: CK_SESSION_HANDLE,
    key: CK_OBJECT_HANDLE,
    data: &[u8],
) -> Result<Vec<u8>, CK_RV> {
    let mut mech = CK_MECHANISM { mechanism: CKM_ECDSA, pParameter: std::ptr::null_mut(), ulParameterLen: 0 };
    let mut data = data.to_vec();
    let mut len: CK_ULONG = 0;
    // SAFETY: pointers to live locals; lengths match the buffers.
    unsafe {
        let rv = f.C_SignInit.unwrap()(session, &mut mech, key);
        if rv != CKR_OK {
            return Err(rv);
        }
        let rv = f.C_Sign.unwrap()(session, data.as_mut_ptr(), data.len() as CK_ULONG, std::ptr::null_mut(), &mut len);
        assert_eq!((rv, len), (CKR_OK, 64), "size query");
        let mut sig = vec![0u8; 64];
        let rv = f.C_Sign.unwrap()(session, data.as_mut_ptr(), data.len() as CK_ULONG, sig.as_mut_ptr(), &mut len);
        if rv != CKR_OK {
            return Err(rv);
        }
        sig.truncate(len as usize);
        Ok(sig)
    }
}

#[test]
fn cryptoki_api_against_simulated_card() {
    let pcscd = Pcscd::start(rig::DEFAULT_NAME, rig::DEFAULT_PORT).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let card = tmp.path().join("card");
    provision::provision(&card, "api._device.example").unwrap();
    let sim = Sim::insert(SimConfig::new(&card, pcscd.port(0))).unwrap();
    rig::wait_card(&pcscd.reader(0), true, Duration::from_secs(15)).unwrap();
    // Read at C_Initialize; this test binary has no other threads using it.
    std::env::set_var("IOTSAFE_READER", "IoTSAFE Sim 00 00");

    let f = functions();
    // SAFETY: Cryptoki calls with valid pointers to locals.
    unsafe {
        assert_eq!(f.C_Initialize.unwrap()(std::ptr::null_mut()), CKR_OK);
        assert_eq!(f.C_Initialize.unwrap()(std::ptr::null_mut()), CKR_CRYPTOKI_ALREADY_INITIALIZED);
        let mut n: CK_ULONG = 0;
        assert_eq!(f.C_GetSlotList.unwrap()(CK_TRUE, std::ptr::null_mut(), &mut n), CKR_OK);
        assert_eq!(n, 1, "one reader matches IOTSAFE_READER and holds the token");
        let mut slot: CK_SLOT_ID = 99;
        assert_eq!(f.C_GetSlotList.unwrap()(CK_TRUE, &mut slot, &mut n), CKR_OK);
        let mut info: CK_TOKEN_INFO = std::mem::zeroed();
        assert_eq!(f.C_GetTokenInfo.unwrap()(slot, &mut info), CKR_OK);
        assert_eq!(&info.label[..8], b"iotsafe ");
        assert_eq!(info.flags & CKF_LOGIN_REQUIRED, 0);

        let mut session: CK_SESSION_HANDLE = 0;
        assert_eq!(
            f.C_OpenSession.unwrap()(slot, CKF_SERIAL_SESSION, std::ptr::null_mut(), None, &mut session),
            CKR_OK
        );
        let mut pin = *b"whatever";
        assert_eq!(f.C_Login.unwrap()(session, CKU_USER, pin.as_mut_ptr(), 8), CKR_OK);

        let keys = find(f, session, CKO_PRIVATE_KEY);
        let pubs = find(f, session, CKO_PUBLIC_KEY);
        let certs = find(f, session, CKO_CERTIFICATE);
        assert_eq!((keys.len(), pubs.len(), certs.len()), (1, 1, 1));
        let key = keys[0];
        assert_eq!(attr(f, session, key, CKA_ID).unwrap(), vec![1]);
        assert_eq!(attr(f, session, key, CKA_LABEL).unwrap(), b"IOTSAFE_KEY");
        assert_eq!(attr(f, session, key, CKA_KEY_TYPE).unwrap(), CKK_EC.to_ne_bytes());
        assert_eq!(attr(f, session, key, CKA_ALWAYS_AUTHENTICATE).unwrap(), vec![CK_FALSE]);
        assert_eq!(attr(f, session, key, CKA_EC_PARAMS).unwrap(), iotsafe_pkcs11::EC_PARAMS_P256);
        assert_eq!(attr(f, session, key, CKA_VALUE), None, "private value never exposed");
        assert_eq!(attr(f, session, certs[0], CKA_ID).unwrap(), vec![1], "paired with key 01");
        let cert_der = attr(f, session, certs[0], CKA_VALUE).unwrap();
        assert_eq!(cert_der, std::fs::read(card.join("file-02.bin")).unwrap());

        let ec_point = attr(f, session, pubs[0], CKA_EC_POINT).unwrap();
        assert_eq!(&ec_point[..3], &[0x04, 0x41, 0x04]);
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let mut ctx = BigNumContext::new().unwrap();
        let point = EcPoint::from_bytes(&group, &ec_point[2..], &mut ctx).unwrap();
        let verifier = EcKey::from_public_key(&group, &point).unwrap();

        // OpenSSL's ECDSA verify applies the same "leftmost bits" rule, so
        // every accepted input length must verify as is.
        for len in [20usize, 32, 48, 64] {
            let data: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37).wrapping_add(5)).collect();
            let sig = sign(f, session, key, &data).unwrap();
            assert_eq!(sig.len(), 64);
            let sig = EcdsaSig::from_private_components(
                BigNum::from_slice(&sig[..32]).unwrap(),
                BigNum::from_slice(&sig[32..]).unwrap(),
            )
            .unwrap();
            assert!(sig.verify(&data, &verifier).unwrap(), "{len}-byte input");
        }
        assert_eq!(sign(f, session, key, &[0u8; 19]), Err(CKR_DATA_LEN_RANGE));
        assert_eq!(sign(f, session, pubs[0], &[0u8; 32]), Err(CKR_KEY_HANDLE_INVALID));

        // Card pulled: signing reports the device gone instead of hanging.
        drop(sim);
        rig::wait_card(&pcscd.reader(0), false, Duration::from_secs(15)).unwrap();
        assert_eq!(sign(f, session, key, &[1u8; 32]), Err(CKR_DEVICE_REMOVED));

        assert_eq!(f.C_CloseSession.unwrap()(session), CKR_OK);
        assert_eq!(f.C_Finalize.unwrap()(std::ptr::null_mut()), CKR_OK);
    }
}

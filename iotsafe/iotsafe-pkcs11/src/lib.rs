//! PKCS#11 module backed by an IoT SAFE applet over PC/SC: enough of
//! Cryptoki 2.40 for OpenSSL's pkcs11 engine (libp11 0.4.12) as
//! wpa_supplicant/eapol_test use it for EAP-TLS with the key on the SIM.
//!
//! One slot per PC/SC reader; the token is the applet. Objects: each
//! private key, public key and X.509 certificate file on the card. Only
//! CKM_ECDSA signing; no login is required and any PIN is accepted (the
//! SIM itself gates use of the key). Every entry point catches panics so
//! none can unwind into the C caller.

#![allow(non_snake_case)] // Cryptoki names

mod objects;
mod stubs;
mod token;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};

use cryptoki_sys::*;

use token::{Config, FindState, Session, State};

pub use objects::{digest_for_card, EC_PARAMS_P256};

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// Runs an entry point body, turning a panic into CKR_GENERAL_ERROR.
fn guard(f: impl FnOnce() -> CK_RV) -> CK_RV {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(CKR_GENERAL_ERROR)
}

fn lock() -> MutexGuard<'static, Option<State>> {
    // A panic while holding the lock was already reported as
    // CKR_GENERAL_ERROR; the state itself stays consistent enough to go on.
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `f` on the initialized state.
fn with_state(f: impl FnOnce(&mut State) -> CK_RV) -> CK_RV {
    guard(|| match lock().as_mut() {
        Some(st) => f(st),
        None => CKR_CRYPTOKI_NOT_INITIALIZED,
    })
}

/// Space-padded fixed-size Cryptoki string.
fn padded<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [b' '; N];
    let b = s.as_bytes();
    let n = b.len().min(N);
    out[..n].copy_from_slice(&b[..n]);
    out
}

fn object_handle(slot: CK_SLOT_ID, index: usize) -> CK_OBJECT_HANDLE {
    ((slot + 1) << 16) | (index as CK_ULONG + 1)
}

fn split_handle(h: CK_OBJECT_HANDLE) -> Option<(CK_SLOT_ID, usize)> {
    let slot = (h >> 16).checked_sub(1)?;
    let index = usize::try_from((h & 0xFFFF).checked_sub(1)?).ok()?;
    Some((slot, index))
}

static FUNCTION_LIST: CK_FUNCTION_LIST = CK_FUNCTION_LIST {
    version: CK_VERSION { major: 2, minor: 40 },
    C_Initialize: Some(C_Initialize),
    C_Finalize: Some(C_Finalize),
    C_GetInfo: Some(C_GetInfo),
    C_GetFunctionList: Some(C_GetFunctionList),
    C_GetSlotList: Some(C_GetSlotList),
    C_GetSlotInfo: Some(C_GetSlotInfo),
    C_GetTokenInfo: Some(C_GetTokenInfo),
    C_GetMechanismList: Some(C_GetMechanismList),
    C_GetMechanismInfo: Some(C_GetMechanismInfo),
    C_InitToken: Some(stubs::C_InitToken),
    C_InitPIN: Some(stubs::C_InitPIN),
    C_SetPIN: Some(stubs::C_SetPIN),
    C_OpenSession: Some(C_OpenSession),
    C_CloseSession: Some(C_CloseSession),
    C_CloseAllSessions: Some(C_CloseAllSessions),
    C_GetSessionInfo: Some(C_GetSessionInfo),
    C_GetOperationState: Some(stubs::C_GetOperationState),
    C_SetOperationState: Some(stubs::C_SetOperationState),
    C_Login: Some(C_Login),
    C_Logout: Some(C_Logout),
    C_CreateObject: Some(stubs::C_CreateObject),
    C_CopyObject: Some(stubs::C_CopyObject),
    C_DestroyObject: Some(stubs::C_DestroyObject),
    C_GetObjectSize: Some(stubs::C_GetObjectSize),
    C_GetAttributeValue: Some(C_GetAttributeValue),
    C_SetAttributeValue: Some(stubs::C_SetAttributeValue),
    C_FindObjectsInit: Some(C_FindObjectsInit),
    C_FindObjects: Some(C_FindObjects),
    C_FindObjectsFinal: Some(C_FindObjectsFinal),
    C_EncryptInit: Some(stubs::C_EncryptInit),
    C_Encrypt: Some(stubs::C_Encrypt),
    C_EncryptUpdate: Some(stubs::C_EncryptUpdate),
    C_EncryptFinal: Some(stubs::C_EncryptFinal),
    C_DecryptInit: Some(stubs::C_DecryptInit),
    C_Decrypt: Some(stubs::C_Decrypt),
    C_DecryptUpdate: Some(stubs::C_DecryptUpdate),
    C_DecryptFinal: Some(stubs::C_DecryptFinal),
    C_DigestInit: Some(stubs::C_DigestInit),
    C_Digest: Some(stubs::C_Digest),
    C_DigestUpdate: Some(stubs::C_DigestUpdate),
    C_DigestKey: Some(stubs::C_DigestKey),
    C_DigestFinal: Some(stubs::C_DigestFinal),
    C_SignInit: Some(C_SignInit),
    C_Sign: Some(C_Sign),
    C_SignUpdate: Some(stubs::C_SignUpdate),
    C_SignFinal: Some(stubs::C_SignFinal),
    C_SignRecoverInit: Some(stubs::C_SignRecoverInit),
    C_SignRecover: Some(stubs::C_SignRecover),
    C_VerifyInit: Some(stubs::C_VerifyInit),
    C_Verify: Some(stubs::C_Verify),
    C_VerifyUpdate: Some(stubs::C_VerifyUpdate),
    C_VerifyFinal: Some(stubs::C_VerifyFinal),
    C_VerifyRecoverInit: Some(stubs::C_VerifyRecoverInit),
    C_VerifyRecover: Some(stubs::C_VerifyRecover),
    C_DigestEncryptUpdate: Some(stubs::C_DigestEncryptUpdate),
    C_DecryptDigestUpdate: Some(stubs::C_DecryptDigestUpdate),
    C_SignEncryptUpdate: Some(stubs::C_SignEncryptUpdate),
    C_DecryptVerifyUpdate: Some(stubs::C_DecryptVerifyUpdate),
    C_GenerateKey: Some(stubs::C_GenerateKey),
    C_GenerateKeyPair: Some(stubs::C_GenerateKeyPair),
    C_WrapKey: Some(stubs::C_WrapKey),
    C_UnwrapKey: Some(stubs::C_UnwrapKey),
    C_DeriveKey: Some(stubs::C_DeriveKey),
    C_SeedRandom: Some(stubs::C_SeedRandom),
    C_GenerateRandom: Some(stubs::C_GenerateRandom),
    C_GetFunctionStatus: Some(stubs::C_GetFunctionStatus),
    C_CancelFunction: Some(stubs::C_CancelFunction),
    C_WaitForSlotEvent: Some(stubs::C_WaitForSlotEvent),
};

/// The one exported symbol libp11 looks up.
///
/// # Safety
/// `ppFunctionList` must be NULL or point to writable storage for a pointer.
#[no_mangle]
pub unsafe extern "C" fn C_GetFunctionList(ppFunctionList: CK_FUNCTION_LIST_PTR_PTR) -> CK_RV {
    guard(|| {
        if ppFunctionList.is_null() {
            return CKR_ARGUMENTS_BAD;
        }
        // The list is immutable; Cryptoki's type is *mut for C reasons only.
        *ppFunctionList = &FUNCTION_LIST as *const CK_FUNCTION_LIST as *mut CK_FUNCTION_LIST;
        CKR_OK
    })
}

unsafe extern "C" fn C_Initialize(_pInitArgs: *mut std::ffi::c_void) -> CK_RV {
    // Any locking arguments are fine: all state sits behind our own mutex.
    guard(|| {
        let mut st = lock();
        if st.is_some() {
            return CKR_CRYPTOKI_ALREADY_INITIALIZED;
        }
        *st = Some(State::new(Config::from_env()));
        CKR_OK
    })
}

unsafe extern "C" fn C_Finalize(pReserved: *mut std::ffi::c_void) -> CK_RV {
    guard(|| {
        if !pReserved.is_null() {
            return CKR_ARGUMENTS_BAD;
        }
        match lock().take() {
            Some(_) => CKR_OK,
            None => CKR_CRYPTOKI_NOT_INITIALIZED,
        }
    })
}

unsafe extern "C" fn C_GetInfo(pInfo: *mut CK_INFO) -> CK_RV {
    with_state(|_| {
        if pInfo.is_null() {
            return CKR_ARGUMENTS_BAD;
        }
        *pInfo = CK_INFO {
            cryptokiVersion: CK_VERSION { major: 2, minor: 40 },
            manufacturerID: padded("rlm_rust IoT SAFE"),
            flags: 0,
            libraryDescription: padded("IoT SAFE over PC/SC"),
            libraryVersion: CK_VERSION { major: 0, minor: 1 },
        };
        CKR_OK
    })
}

unsafe extern "C" fn C_GetSlotList(
    tokenPresent: CK_BBOOL,
    pSlotList: *mut CK_SLOT_ID,
    pulCount: *mut CK_ULONG,
) -> CK_RV {
    with_state(|st| {
        if pulCount.is_null() {
            return CKR_ARGUMENTS_BAD;
        }
        if pSlotList.is_null() {
            st.refresh_readers();
        }
        let slots: Vec<CK_SLOT_ID> =
            (0..st.readers.len() as CK_SLOT_ID).filter(|s| tokenPresent == CK_FALSE || st.token_present(*s)).collect();
        if pSlotList.is_null() {
            *pulCount = slots.len() as CK_ULONG;
            return CKR_OK;
        }
        if (*pulCount as usize) < slots.len() {
            *pulCount = slots.len() as CK_ULONG;
            return CKR_BUFFER_TOO_SMALL;
        }
        std::ptr::copy_nonoverlapping(slots.as_ptr(), pSlotList, slots.len());
        *pulCount = slots.len() as CK_ULONG;
        CKR_OK
    })
}

unsafe extern "C" fn C_GetSlotInfo(slotID: CK_SLOT_ID, pInfo: *mut CK_SLOT_INFO) -> CK_RV {
    with_state(|st| {
        if pInfo.is_null() {
            return CKR_ARGUMENTS_BAD;
        }
        let Some(name) = st.reader(slotID) else {
            return CKR_SLOT_ID_INVALID;
        };
        let mut flags = CKF_HW_SLOT | CKF_REMOVABLE_DEVICE;
        if st.token_present(slotID) {
            flags |= CKF_TOKEN_PRESENT;
        }
        *pInfo = CK_SLOT_INFO {
            slotDescription: padded(name),
            manufacturerID: padded("PC/SC"),
            flags,
            hardwareVersion: CK_VERSION { major: 0, minor: 0 },
            firmwareVersion: CK_VERSION { major: 0, minor: 0 },
        };
        CKR_OK
    })
}

unsafe extern "C" fn C_GetTokenInfo(slotID: CK_SLOT_ID, pInfo: *mut CK_TOKEN_INFO) -> CK_RV {
    with_state(|st| {
        if pInfo.is_null() {
            return CKR_ARGUMENTS_BAD;
        }
        if st.reader(slotID).is_none() {
            return CKR_SLOT_ID_INVALID;
        }
        if !st.token_present(slotID) {
            return CKR_TOKEN_NOT_PRESENT;
        }
        let sessions = st.sessions.values().filter(|s| s.slot == slotID).count() as CK_ULONG;
        *pInfo = CK_TOKEN_INFO {
            label: padded(&st.config.label),
            manufacturerID: padded("GSMA IoT SAFE"),
            model: padded("IoT SAFE applet"),
            serialNumber: padded(&format!("{slotID:016}")),
            // No CKF_LOGIN_REQUIRED: libp11 then never asks for a PIN.
            flags: CKF_TOKEN_INITIALIZED | CKF_WRITE_PROTECTED,
            ulMaxSessionCount: CK_EFFECTIVELY_INFINITE,
            ulSessionCount: sessions,
            ulMaxRwSessionCount: CK_EFFECTIVELY_INFINITE,
            ulRwSessionCount: 0,
            ulMaxPinLen: 64,
            ulMinPinLen: 0,
            ulTotalPublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulTotalPrivateMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePrivateMemory: CK_UNAVAILABLE_INFORMATION,
            hardwareVersion: CK_VERSION { major: 0, minor: 0 },
            firmwareVersion: CK_VERSION { major: 0, minor: 0 },
            utcTime: [b' '; 16],
        };
        CKR_OK
    })
}

unsafe extern "C" fn C_GetMechanismList(
    slotID: CK_SLOT_ID,
    pMechanismList: *mut CK_MECHANISM_TYPE,
    pulCount: *mut CK_ULONG,
) -> CK_RV {
    with_state(|st| {
        if pulCount.is_null() {
            return CKR_ARGUMENTS_BAD;
        }
        if st.reader(slotID).is_none() {
            return CKR_SLOT_ID_INVALID;
        }
        if !pMechanismList.is_null() {
            if *pulCount < 1 {
                *pulCount = 1;
                return CKR_BUFFER_TOO_SMALL;
            }
            *pMechanismList = CKM_ECDSA;
        }
        *pulCount = 1;
        CKR_OK
    })
}

unsafe extern "C" fn C_GetMechanismInfo(
    slotID: CK_SLOT_ID,
    type_: CK_MECHANISM_TYPE,
    pInfo: *mut CK_MECHANISM_INFO,
) -> CK_RV {
    with_state(|st| {
        if pInfo.is_null() {
            return CKR_ARGUMENTS_BAD;
        }
        if st.reader(slotID).is_none() {
            return CKR_SLOT_ID_INVALID;
        }
        if type_ != CKM_ECDSA {
            return CKR_MECHANISM_INVALID;
        }
        *pInfo = CK_MECHANISM_INFO {
            ulMinKeySize: 256,
            ulMaxKeySize: 256,
            flags: CKF_HW | CKF_SIGN | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS,
        };
        CKR_OK
    })
}

unsafe extern "C" fn C_OpenSession(
    slotID: CK_SLOT_ID,
    flags: CK_FLAGS,
    _pApplication: *mut std::ffi::c_void,
    _Notify: CK_NOTIFY,
    phSession: *mut CK_SESSION_HANDLE,
) -> CK_RV {
    with_state(|st| {
        if phSession.is_null() {
            return CKR_ARGUMENTS_BAD;
        }
        if flags & CKF_SERIAL_SESSION == 0 {
            return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
        }
        if st.reader(slotID).is_none() {
            return CKR_SLOT_ID_INVALID;
        }
        // Load (or reload, the card may have changed) the object table.
        if !st.sessions.values().any(|s| s.slot == slotID) {
            if let Err(rv) = st.load_objects(slotID) {
                return rv;
            }
        }
        let h = st.next_session;
        st.next_session += 1;
        st.sessions.insert(h, Session { slot: slotID, flags, find: None, sign_key: None });
        *phSession = h;
        CKR_OK
    })
}

unsafe extern "C" fn C_CloseSession(hSession: CK_SESSION_HANDLE) -> CK_RV {
    with_state(|st| match st.sessions.remove(&hSession) {
        Some(_) => CKR_OK,
        None => CKR_SESSION_HANDLE_INVALID,
    })
}

unsafe extern "C" fn C_CloseAllSessions(slotID: CK_SLOT_ID) -> CK_RV {
    with_state(|st| {
        if st.reader(slotID).is_none() {
            return CKR_SLOT_ID_INVALID;
        }
        st.sessions.retain(|_, s| s.slot != slotID);
        CKR_OK
    })
}

unsafe extern "C" fn C_GetSessionInfo(hSession: CK_SESSION_HANDLE, pInfo: *mut CK_SESSION_INFO) -> CK_RV {
    with_state(|st| {
        if pInfo.is_null() {
            return CKR_ARGUMENTS_BAD;
        }
        let logged_in = st.logged_in;
        let Some(s) = st.sessions.get(&hSession) else {
            return CKR_SESSION_HANDLE_INVALID;
        };
        let rw = s.flags & CKF_RW_SESSION != 0;
        *pInfo = CK_SESSION_INFO {
            slotID: s.slot,
            state: match (rw, logged_in) {
                (false, false) => CKS_RO_PUBLIC_SESSION,
                (false, true) => CKS_RO_USER_FUNCTIONS,
                (true, false) => CKS_RW_PUBLIC_SESSION,
                (true, true) => CKS_RW_USER_FUNCTIONS,
            },
            flags: s.flags,
            ulDeviceError: 0,
        };
        CKR_OK
    })
}

unsafe extern "C" fn C_Login(
    hSession: CK_SESSION_HANDLE,
    _userType: CK_USER_TYPE,
    _pPin: *mut CK_UTF8CHAR,
    _ulPinLen: CK_ULONG,
) -> CK_RV {
    // Any PIN: the token has no PIN of its own (the SIM's PIN, if any, is
    // the modem's business), and refusing would only break callers that
    // log in unconditionally.
    with_state(|st| {
        if !st.sessions.contains_key(&hSession) {
            return CKR_SESSION_HANDLE_INVALID;
        }
        st.logged_in = true;
        CKR_OK
    })
}

unsafe extern "C" fn C_Logout(hSession: CK_SESSION_HANDLE) -> CK_RV {
    with_state(|st| {
        if !st.sessions.contains_key(&hSession) {
            return CKR_SESSION_HANDLE_INVALID;
        }
        st.logged_in = false;
        CKR_OK
    })
}

unsafe extern "C" fn C_GetAttributeValue(
    hSession: CK_SESSION_HANDLE,
    hObject: CK_OBJECT_HANDLE,
    pTemplate: *mut CK_ATTRIBUTE,
    ulCount: CK_ULONG,
) -> CK_RV {
    with_state(|st| {
        let Some(s) = st.sessions.get(&hSession) else {
            return CKR_SESSION_HANDLE_INVALID;
        };
        let obj = match split_handle(hObject) {
            Some((slot, i)) if slot == s.slot => st.objects.get(&slot).and_then(|o| o.get(i)),
            _ => None,
        };
        let Some(obj) = obj else {
            return CKR_OBJECT_HANDLE_INVALID;
        };
        if pTemplate.is_null() && ulCount > 0 {
            return CKR_ARGUMENTS_BAD;
        }
        if ulCount == 0 {
            return CKR_OK;
        }
        let template = std::slice::from_raw_parts_mut(pTemplate, ulCount as usize);
        let mut rv = CKR_OK;
        for a in template.iter_mut() {
            match obj.attr(a.type_) {
                None => {
                    a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    rv = CKR_ATTRIBUTE_TYPE_INVALID;
                }
                Some(v) if a.pValue.is_null() => a.ulValueLen = v.len() as CK_ULONG,
                Some(v) if (a.ulValueLen as usize) < v.len() => {
                    a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    if rv == CKR_OK {
                        rv = CKR_BUFFER_TOO_SMALL;
                    }
                }
                Some(v) => {
                    std::ptr::copy_nonoverlapping(v.as_ptr(), a.pValue as *mut u8, v.len());
                    a.ulValueLen = v.len() as CK_ULONG;
                }
            }
        }
        rv
    })
}

unsafe extern "C" fn C_FindObjectsInit(
    hSession: CK_SESSION_HANDLE,
    pTemplate: *mut CK_ATTRIBUTE,
    ulCount: CK_ULONG,
) -> CK_RV {
    with_state(|st| {
        if pTemplate.is_null() && ulCount > 0 {
            return CKR_ARGUMENTS_BAD;
        }
        let mut wanted = Vec::new();
        if ulCount > 0 {
            for a in std::slice::from_raw_parts(pTemplate, ulCount as usize) {
                if a.pValue.is_null() && a.ulValueLen > 0 {
                    return CKR_ARGUMENTS_BAD;
                }
                let v = if a.ulValueLen == 0 {
                    Vec::new()
                } else {
                    std::slice::from_raw_parts(a.pValue as *const u8, a.ulValueLen as usize).to_vec()
                };
                wanted.push((a.type_, v));
            }
        }
        let Some(slot) = st.sessions.get(&hSession).map(|s| s.slot) else {
            return CKR_SESSION_HANDLE_INVALID;
        };
        let results = st
            .objects
            .get(&slot)
            .map(|objs| {
                objs.iter()
                    .enumerate()
                    .filter(|(_, o)| o.matches(&wanted))
                    .map(|(i, _)| object_handle(slot, i))
                    .collect()
            })
            .unwrap_or_default();
        let Some(s) = st.sessions.get_mut(&hSession) else {
            return CKR_SESSION_HANDLE_INVALID;
        };
        if s.find.is_some() {
            return CKR_OPERATION_ACTIVE;
        }
        s.find = Some(FindState { results });
        CKR_OK
    })
}

unsafe extern "C" fn C_FindObjects(
    hSession: CK_SESSION_HANDLE,
    phObject: *mut CK_OBJECT_HANDLE,
    ulMaxObjectCount: CK_ULONG,
    pulObjectCount: *mut CK_ULONG,
) -> CK_RV {
    with_state(|st| {
        if pulObjectCount.is_null() || (phObject.is_null() && ulMaxObjectCount > 0) {
            return CKR_ARGUMENTS_BAD;
        }
        let Some(s) = st.sessions.get_mut(&hSession) else {
            return CKR_SESSION_HANDLE_INVALID;
        };
        let Some(find) = s.find.as_mut() else {
            return CKR_OPERATION_NOT_INITIALIZED;
        };
        let n = find.results.len().min(ulMaxObjectCount as usize);
        for (i, h) in find.results.drain(..n).enumerate() {
            *phObject.add(i) = h;
        }
        *pulObjectCount = n as CK_ULONG;
        CKR_OK
    })
}

unsafe extern "C" fn C_FindObjectsFinal(hSession: CK_SESSION_HANDLE) -> CK_RV {
    with_state(|st| {
        let Some(s) = st.sessions.get_mut(&hSession) else {
            return CKR_SESSION_HANDLE_INVALID;
        };
        if s.find.take().is_none() {
            return CKR_OPERATION_NOT_INITIALIZED;
        }
        CKR_OK
    })
}

unsafe extern "C" fn C_SignInit(
    hSession: CK_SESSION_HANDLE,
    pMechanism: *mut CK_MECHANISM,
    hKey: CK_OBJECT_HANDLE,
) -> CK_RV {
    with_state(|st| {
        if pMechanism.is_null() {
            return CKR_ARGUMENTS_BAD;
        }
        if (*pMechanism).mechanism != CKM_ECDSA {
            return CKR_MECHANISM_INVALID;
        }
        let Some(slot) = st.sessions.get(&hSession).map(|s| s.slot) else {
            return CKR_SESSION_HANDLE_INVALID;
        };
        let key_id = match split_handle(hKey) {
            Some((sl, i)) if sl == slot => st.objects.get(&slot).and_then(|o| o.get(i)).and_then(|o| o.key_id.clone()),
            _ => None,
        };
        let Some(key_id) = key_id else {
            return CKR_KEY_HANDLE_INVALID;
        };
        let Some(s) = st.sessions.get_mut(&hSession) else {
            return CKR_SESSION_HANDLE_INVALID;
        };
        if s.sign_key.is_some() {
            return CKR_OPERATION_ACTIVE;
        }
        s.sign_key = Some(key_id);
        CKR_OK
    })
}

unsafe extern "C" fn C_Sign(
    hSession: CK_SESSION_HANDLE,
    pData: *mut CK_BYTE,
    ulDataLen: CK_ULONG,
    pSignature: *mut CK_BYTE,
    pulSignatureLen: *mut CK_ULONG,
) -> CK_RV {
    with_state(|st| {
        if pulSignatureLen.is_null() || (pData.is_null() && ulDataLen > 0) {
            return CKR_ARGUMENTS_BAD;
        }
        let Some(s) = st.sessions.get(&hSession) else {
            return CKR_SESSION_HANDLE_INVALID;
        };
        let Some(key_id) = s.sign_key.clone() else {
            return CKR_OPERATION_NOT_INITIALIZED;
        };
        let slot = s.slot;
        // Size query: the operation stays active (PKCS#11 5.2).
        if pSignature.is_null() {
            *pulSignatureLen = 64;
            return CKR_OK;
        }
        if *pulSignatureLen < 64 {
            *pulSignatureLen = 64;
            return CKR_BUFFER_TOO_SMALL;
        }
        let data = if ulDataLen == 0 { &[][..] } else { std::slice::from_raw_parts(pData, ulDataLen as usize) };
        // Any other outcome ends the operation.
        if let Some(s) = st.sessions.get_mut(&hSession) {
            s.sign_key = None;
        }
        let Some(digest) = digest_for_card(data) else {
            return CKR_DATA_LEN_RANGE;
        };
        match st.sign(slot, &key_id, &digest) {
            Ok(sig) => {
                std::ptr::copy_nonoverlapping(sig.as_ptr(), pSignature, 64);
                *pulSignatureLen = 64;
                CKR_OK
            }
            Err(rv) => rv,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip() {
        for (slot, idx) in [(0, 0), (1, 5), (7, 0xFFFE)] {
            assert_eq!(split_handle(object_handle(slot, idx)), Some((slot, idx)));
        }
        assert_eq!(split_handle(0), None);
        assert_eq!(split_handle(5), None);
    }

    #[test]
    fn padding_and_function_list() {
        assert_eq!(&padded::<8>("abc"), b"abc     ");
        assert_eq!(&padded::<2>("abc"), b"ab");
        let mut p: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
        unsafe {
            assert_eq!(C_GetFunctionList(&mut p), CKR_OK);
            assert_eq!(C_GetFunctionList(std::ptr::null_mut()), CKR_ARGUMENTS_BAD);
            let fl = &*p;
            assert_eq!(fl.version.major, 2);
            assert!(fl.C_Sign.is_some() && fl.C_WaitForSlotEvent.is_some());
            let stub = fl.C_DigestInit.unwrap();
            assert_eq!(stub(0, std::ptr::null_mut()), CKR_FUNCTION_NOT_SUPPORTED);
        }
    }

    #[test]
    fn guard_turns_panics_into_general_error() {
        assert_eq!(guard(|| panic!("boom")), CKR_GENERAL_ERROR);
        assert_eq!(guard(|| CKR_OK), CKR_OK);
    }
}

//! The two roles of the MSE handshake as state machines.

use rand::{CryptoRng, RngCore};

use super::{
    derive_keys, hash, req2_hash, Cipher, Method, Methods, MseError, Outcome, Padding, PrivateKey,
    SkeyLookup, MAX_BEFORE_SYNC, MAX_INITIAL_PAYLOAD, MAX_PAD, PUBLIC_KEY_LEN, VC,
};

/// Where the responder stops looking for HASH('req1', S): it starts after
/// at most 96 + 512 bytes and is 20 long.
const REQ1_WINDOW: usize = MAX_BEFORE_SYNC + 20;
/// Where the initiator stops looking for ENCRYPT(VC).
const VC_WINDOW: usize = MAX_BEFORE_SYNC + VC.len();

/// What the dialling side needs to know.
#[derive(Debug, Clone)]
pub struct InitiatorConfig {
    /// SKEY: the torrent we dial for.
    pub info_hash: [u8; 20],
    /// crypto_provide: what we accept for the payload.
    pub provide: Methods,
    /// IA, sent encrypted in step 3 (the BitTorrent handshake, usually);
    /// at most 65535 bytes. Always RC4-encrypted, whatever is selected.
    pub initial_payload: Vec<u8>,
    /// PadA and PadC.
    pub padding: Padding,
}

/// What the accepting side accepts.
#[derive(Debug, Clone, Copy)]
pub struct ResponderConfig {
    /// Methods we select from (with the initiator's crypto_provide).
    pub accept: Methods,
    /// Selected when both offer it; otherwise the other common one.
    pub prefer: Method,
    /// PadB and PadD.
    pub padding: Padding,
}

impl Default for ResponderConfig {
    fn default() -> Self {
        Self {
            accept: Methods::BOTH,
            prefer: Method::Rc4,
            padding: Padding::Random,
        }
    }
}

/// What both roles keep: the bytes received, how far they are parsed, the
/// bytes waiting to go out.
#[derive(Debug, Default)]
struct Io {
    received: Vec<u8>,
    parsed: usize,
    transmit: Vec<u8>,
    queued_total: u64,
}

impl Io {
    fn queue(&mut self, bytes: &[u8]) {
        self.transmit.extend_from_slice(bytes);
        self.queued_total += bytes.len() as u64;
    }

    /// The next `n` unparsed bytes, decrypted in place, when all are here.
    fn take(&mut self, n: usize, cipher: &mut Cipher) -> Option<&[u8]> {
        let end = self.parsed.checked_add(n)?;
        if self.received.len() < end {
            return None;
        }
        let field = &mut self.received[self.parsed..end];
        cipher.apply(field);
        self.parsed = end;
        Some(field)
    }

    /// Everything after the handshake, decrypted by `cipher` when given.
    fn rest(&mut self, cipher: Option<&mut Cipher>) -> Vec<u8> {
        let mut rest = self.received.split_off(self.parsed);
        if let Some(cipher) = cipher {
            cipher.apply(&mut rest);
        }
        rest
    }
}

/// Offset of `pattern` in `received[PUBLIC_KEY_LEN..window]`, as the offset
/// just past it in `received`; `Err` once the whole window is here without it.
fn find_sync(
    received: &[u8],
    pattern: &[u8],
    window: usize,
    what: &'static str,
) -> Result<Option<usize>, MseError> {
    let end = received.len().min(window);
    if end >= PUBLIC_KEY_LEN + pattern.len() {
        let found = received[PUBLIC_KEY_LEN..end]
            .windows(pattern.len())
            .position(|w| w == pattern);
        if let Some(at) = found {
            return Ok(Some(PUBLIC_KEY_LEN + at + pattern.len()));
        }
    }
    if received.len() >= window {
        return Err(MseError::NoSync(what, window));
    }
    Ok(None)
}

fn random_pad<R: RngCore>(padding: Padding, rng: &mut R) -> Vec<u8> {
    let mut pad = vec![0u8; padding.draw(rng)];
    rng.fill_bytes(&mut pad);
    pad
}

fn peer_key(received: &[u8]) -> [u8; PUBLIC_KEY_LEN] {
    let mut key = [0u8; PUBLIC_KEY_LEN];
    key.copy_from_slice(&received[..PUBLIC_KEY_LEN]);
    key
}

fn xor20(a: &[u8; 20], b: &[u8; 20]) -> [u8; 20] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InitiatorState {
    ReadKey,
    WantDh,
    FindVc,
    ReadSelect,
    ReadPadD { len: usize, method: Method },
    Done,
    Failed,
}

/// The dialling side (A).
#[derive(Debug)]
pub struct Initiator {
    state: InitiatorState,
    key: PrivateKey,
    info_hash: [u8; 20],
    provide: Methods,
    initial_payload: Vec<u8>,
    pad_c: usize,
    io: Io,
    send: Option<Cipher>,
    receive: Option<Cipher>,
    encrypted_vc: [u8; 8],
    outcome: Option<Outcome>,
}

impl Initiator {
    /// Starts a handshake: draws the private key and padding, computes the
    /// public key (one modular exponentiation) and queues Ya, PadA.
    pub fn new<R: RngCore + CryptoRng>(
        config: InitiatorConfig,
        rng: &mut R,
    ) -> Result<Self, MseError> {
        if config.initial_payload.len() > MAX_INITIAL_PAYLOAD {
            return Err(MseError::InitialPayloadTooLong(
                config.initial_payload.len(),
            ));
        }
        if !(config.provide.contains(Method::Plaintext) || config.provide.contains(Method::Rc4)) {
            return Err(MseError::NothingProvided);
        }
        let key = PrivateKey::random(rng);
        let mut io = Io::default();
        io.queue(&key.public_key());
        io.queue(&random_pad(config.padding, rng));
        let pad_c = config.padding.draw(rng);
        Ok(Self {
            state: InitiatorState::ReadKey,
            key,
            info_hash: config.info_hash,
            provide: config.provide,
            initial_payload: config.initial_payload,
            pad_c,
            io,
            send: None,
            receive: None,
            encrypted_vc: [0; 8],
            outcome: None,
        })
    }

    /// Bytes from the peer. An error means: drop the peer.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), MseError> {
        match self.state {
            InitiatorState::Done => return Err(MseError::Over("finished")),
            InitiatorState::Failed => return Err(MseError::Over("failed")),
            _ => {}
        }
        self.io.received.extend_from_slice(data);
        self.advance()
            .inspect_err(|_| self.state = InitiatorState::Failed)
    }

    /// The peer closed its side: an error unless the handshake is done.
    pub fn handle_eof(&mut self) -> Result<(), MseError> {
        let err = match self.state {
            InitiatorState::Done => return Ok(()),
            InitiatorState::Failed => MseError::Over("failed"),
            InitiatorState::ReadKey => MseError::ShortPublicKey(self.io.received.len()),
            InitiatorState::WantDh | InitiatorState::FindVc => {
                MseError::Closed("looking for the verification constant")
            }
            InitiatorState::ReadSelect | InitiatorState::ReadPadD { .. } => {
                MseError::Closed("reading crypto_select and PadD")
            }
        };
        self.state = InitiatorState::Failed;
        Err(err)
    }

    /// Whether [`compute_dh`](Self::compute_dh) is what it waits for.
    pub fn wants_dh(&self) -> bool {
        self.state == InitiatorState::WantDh
    }

    /// The shared secret from the peer's public key (one modular
    /// exponentiation), then step 3 is queued. Does nothing unless
    /// [`wants_dh`](Self::wants_dh).
    pub fn compute_dh(&mut self) -> Result<(), MseError> {
        if !self.wants_dh() {
            return Ok(());
        }
        self.start_encryption()
            .and_then(|()| self.advance())
            .inspect_err(|_| self.state = InitiatorState::Failed)
    }

    fn start_encryption(&mut self) -> Result<(), MseError> {
        let secret = self.key.shared_secret(&peer_key(&self.io.received))?;
        let (key_a, key_b) = derive_keys(&secret, &self.info_hash);
        let mut send = Cipher::new(&key_a);
        let mut receive = Cipher::new(&key_b);
        // The responder's stream starts with VC, zeros: its keystream.
        receive.apply(&mut self.encrypted_vc);

        self.io.queue(&hash(&[b"req1", &secret]));
        self.io.queue(&xor20(
            &req2_hash(&self.info_hash),
            &hash(&[b"req3", &secret]),
        ));
        let mut fields = Vec::with_capacity(16 + self.pad_c + self.initial_payload.len());
        fields.extend_from_slice(&VC);
        fields.extend_from_slice(&self.provide.bits().to_be_bytes());
        fields.extend_from_slice(&(self.pad_c as u16).to_be_bytes());
        fields.resize(fields.len() + self.pad_c, 0);
        fields.extend_from_slice(&(self.initial_payload.len() as u16).to_be_bytes());
        fields.extend_from_slice(&self.initial_payload);
        send.apply(&mut fields);
        self.io.queue(&fields);

        self.send = Some(send);
        self.receive = Some(receive);
        self.state = InitiatorState::FindVc;
        Ok(())
    }

    fn advance(&mut self) -> Result<(), MseError> {
        loop {
            match self.state {
                InitiatorState::ReadKey => {
                    if self.io.received.len() < PUBLIC_KEY_LEN {
                        return Ok(());
                    }
                    self.state = InitiatorState::WantDh;
                }
                InitiatorState::WantDh => {
                    // Until step 3 goes out the peer has nothing but Yb and PadB to send.
                    if self.io.received.len() > MAX_BEFORE_SYNC {
                        return Err(MseError::TooMuchBeforeSync(self.io.received.len()));
                    }
                    return Ok(());
                }
                InitiatorState::FindVc => {
                    match find_sync(
                        &self.io.received,
                        &self.encrypted_vc,
                        VC_WINDOW,
                        "ENCRYPT(VC)",
                    )? {
                        Some(after) => {
                            self.io.parsed = after;
                            self.state = InitiatorState::ReadSelect;
                        }
                        None => return Ok(()),
                    }
                }
                InitiatorState::ReadSelect => {
                    let Some(cipher) = self.receive.as_mut() else {
                        return Err(MseError::Over("failed"));
                    };
                    let Some(field) = self.io.take(6, cipher) else {
                        return Ok(());
                    };
                    let selected = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
                    let len = usize::from(u16::from_be_bytes([field[4], field[5]]));
                    let method = [Method::Plaintext, Method::Rc4]
                        .into_iter()
                        .find(|m| m.bit() == selected && self.provide.contains(*m))
                        .ok_or(MseError::BadSelect {
                            selected,
                            provided: self.provide.bits(),
                        })?;
                    if len > MAX_PAD {
                        return Err(MseError::PadTooLong(len));
                    }
                    self.state = InitiatorState::ReadPadD { len, method };
                }
                InitiatorState::ReadPadD { len, method } => {
                    let Some(cipher) = self.receive.as_mut() else {
                        return Err(MseError::Over("failed"));
                    };
                    if self.io.take(len, cipher).is_none() {
                        return Ok(());
                    }
                    self.finish(method);
                }
                InitiatorState::Done | InitiatorState::Failed => return Ok(()),
            }
        }
    }

    fn finish(&mut self, method: Method) {
        let (send, mut receive) = match method {
            Method::Rc4 => (self.send.take(), self.receive.take()),
            Method::Plaintext => (None, None),
        };
        let overhead_received = self.io.parsed as u64;
        let payload = self.io.rest(receive.as_mut());
        self.outcome = Some(Outcome {
            method,
            info_hash: self.info_hash,
            payload,
            initial_payload_len: 0,
            send,
            receive,
            overhead_sent: self.io.queued_total - self.initial_payload.len() as u64,
            overhead_received,
        });
        self.send = None;
        self.receive = None;
        self.state = InitiatorState::Done;
    }

    /// Bytes to send to the peer, in order.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.io.transmit.is_empty()).then(|| std::mem::take(&mut self.io.transmit))
    }

    /// Whether the handshake is complete (its outcome may still wait for
    /// [`poll_transmit`](Self::poll_transmit) to be drained).
    pub fn is_done(&self) -> bool {
        self.state == InitiatorState::Done
    }

    /// The outcome, once the handshake is complete and everything it
    /// queued was taken by [`poll_transmit`](Self::poll_transmit).
    pub fn outcome(&mut self) -> Option<Outcome> {
        if self.io.transmit.is_empty() {
            self.outcome.take()
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponderState {
    ReadKey,
    WantDh,
    FindReq1,
    ReadReq2,
    ReadProvide,
    ReadPadC { len: usize, method: Method },
    ReadInitialPayload { len: usize, method: Method },
    Done,
    Failed,
}

/// The accepting side (B).
pub struct Responder {
    state: ResponderState,
    key: PrivateKey,
    skeys: SkeyLookup,
    config: ResponderConfig,
    pad_b: Vec<u8>,
    pad_d: usize,
    secret: [u8; PUBLIC_KEY_LEN],
    req1: [u8; 20],
    info_hash: [u8; 20],
    io: Io,
    send: Option<Cipher>,
    receive: Option<Cipher>,
    outcome: Option<Outcome>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("state", &self.state)
            .field("config", &self.config)
            .field("received", &self.io.received.len())
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// Waits for an initiator; cheap (no exponentiation before the peer
    /// has sent its whole public key and the caller runs
    /// [`compute_dh`](Self::compute_dh)).
    pub fn new<R: RngCore + CryptoRng>(
        skeys: SkeyLookup,
        config: ResponderConfig,
        rng: &mut R,
    ) -> Self {
        Self {
            state: ResponderState::ReadKey,
            key: PrivateKey::random(rng),
            skeys,
            config,
            pad_b: random_pad(config.padding, rng),
            pad_d: config.padding.draw(rng),
            secret: [0; PUBLIC_KEY_LEN],
            req1: [0; 20],
            info_hash: [0; 20],
            io: Io::default(),
            send: None,
            receive: None,
            outcome: None,
        }
    }

    /// Bytes from the peer. An error means: drop the peer.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), MseError> {
        match self.state {
            ResponderState::Done => return Err(MseError::Over("finished")),
            ResponderState::Failed => return Err(MseError::Over("failed")),
            _ => {}
        }
        self.io.received.extend_from_slice(data);
        self.advance()
            .inspect_err(|_| self.state = ResponderState::Failed)
    }

    /// The peer closed its side: an error unless the handshake is done.
    pub fn handle_eof(&mut self) -> Result<(), MseError> {
        let err = match self.state {
            ResponderState::Done => return Ok(()),
            ResponderState::Failed => MseError::Over("failed"),
            ResponderState::ReadKey => MseError::ShortPublicKey(self.io.received.len()),
            ResponderState::WantDh | ResponderState::FindReq1 => {
                MseError::Closed("looking for HASH('req1', S)")
            }
            _ => MseError::Closed("reading crypto_provide, PadC and the initial payload"),
        };
        self.state = ResponderState::Failed;
        Err(err)
    }

    /// Whether [`compute_dh`](Self::compute_dh) is what it waits for.
    pub fn wants_dh(&self) -> bool {
        self.state == ResponderState::WantDh
    }

    /// Our public key and the shared secret (two modular
    /// exponentiations); queues Yb, PadB. Does nothing unless
    /// [`wants_dh`](Self::wants_dh).
    pub fn compute_dh(&mut self) -> Result<(), MseError> {
        if !self.wants_dh() {
            return Ok(());
        }
        self.answer_key()
            .and_then(|()| self.advance())
            .inspect_err(|_| self.state = ResponderState::Failed)
    }

    fn answer_key(&mut self) -> Result<(), MseError> {
        // The range check comes first: a bad key costs no exponentiation.
        self.secret = self.key.shared_secret(&peer_key(&self.io.received))?;
        self.req1 = hash(&[b"req1", &self.secret]);
        self.io.queue(&self.key.public_key());
        let pad_b = std::mem::take(&mut self.pad_b);
        self.io.queue(&pad_b);
        self.state = ResponderState::FindReq1;
        Ok(())
    }

    fn select(&self, provided: u32) -> Result<Method, MseError> {
        let offered = Methods::from_bits(provided);
        let ok = |m: Method| offered.contains(m) && self.config.accept.contains(m);
        let other = match self.config.prefer {
            Method::Rc4 => Method::Plaintext,
            Method::Plaintext => Method::Rc4,
        };
        [self.config.prefer, other]
            .into_iter()
            .find(|m| ok(*m))
            .ok_or(MseError::NoCommonMethod {
                provided,
                accepted: self.config.accept.bits(),
            })
    }

    fn advance(&mut self) -> Result<(), MseError> {
        loop {
            match self.state {
                ResponderState::ReadKey => {
                    if self.io.received.len() < PUBLIC_KEY_LEN {
                        return Ok(());
                    }
                    self.state = ResponderState::WantDh;
                }
                ResponderState::WantDh => {
                    // Until Yb goes out the peer has nothing but Ya and PadA to send.
                    if self.io.received.len() > MAX_BEFORE_SYNC {
                        return Err(MseError::TooMuchBeforeSync(self.io.received.len()));
                    }
                    return Ok(());
                }
                ResponderState::FindReq1 => {
                    let req1 = self.req1;
                    match find_sync(&self.io.received, &req1, REQ1_WINDOW, "HASH('req1', S)")? {
                        Some(after) => {
                            self.io.parsed = after;
                            self.state = ResponderState::ReadReq2;
                        }
                        None => return Ok(()),
                    }
                }
                ResponderState::ReadReq2 => {
                    let at = self.io.parsed;
                    let Some(field) = self.io.received.get(at..at + 20) else {
                        return Ok(());
                    };
                    let mut obfuscated = [0u8; 20];
                    obfuscated.copy_from_slice(field);
                    self.io.parsed += 20;
                    let req2 = xor20(&obfuscated, &hash(&[b"req3", &self.secret]));
                    self.info_hash = (self.skeys)(&req2).ok_or(MseError::UnknownInfoHash)?;
                    let (key_a, key_b) = derive_keys(&self.secret, &self.info_hash);
                    self.receive = Some(Cipher::new(&key_a));
                    self.send = Some(Cipher::new(&key_b));
                    self.state = ResponderState::ReadProvide;
                }
                ResponderState::ReadProvide => {
                    let Some(cipher) = self.receive.as_mut() else {
                        return Err(MseError::Over("failed"));
                    };
                    let Some(field) = self.io.take(14, cipher) else {
                        return Ok(());
                    };
                    if field[..8] != VC {
                        return Err(MseError::BadVc);
                    }
                    let provided = u32::from_be_bytes([field[8], field[9], field[10], field[11]]);
                    let len = usize::from(u16::from_be_bytes([field[12], field[13]]));
                    if len > MAX_PAD {
                        return Err(MseError::PadTooLong(len));
                    }
                    let method = self.select(provided)?;
                    self.state = ResponderState::ReadPadC { len, method };
                }
                ResponderState::ReadPadC { len, method } => {
                    let Some(cipher) = self.receive.as_mut() else {
                        return Err(MseError::Over("failed"));
                    };
                    let Some(field) = self.io.take(len + 2, cipher) else {
                        return Ok(());
                    };
                    let len = usize::from(u16::from_be_bytes([field[len], field[len + 1]]));
                    self.state = ResponderState::ReadInitialPayload { len, method };
                }
                ResponderState::ReadInitialPayload { len, method } => {
                    let Some(cipher) = self.receive.as_mut() else {
                        return Err(MseError::Over("failed"));
                    };
                    let start = self.io.parsed;
                    if self.io.take(len, cipher).is_none() {
                        return Ok(());
                    }
                    self.io.parsed = start;
                    self.finish(method, len);
                }
                ResponderState::Done | ResponderState::Failed => return Ok(()),
            }
        }
    }

    fn finish(&mut self, method: Method, initial_payload_len: usize) {
        let (Some(mut send), Some(receive)) = (self.send.take(), self.receive.take()) else {
            self.state = ResponderState::Failed;
            return;
        };
        let mut fields = Vec::with_capacity(14 + self.pad_d);
        fields.extend_from_slice(&VC);
        fields.extend_from_slice(&method.bit().to_be_bytes());
        fields.extend_from_slice(&(self.pad_d as u16).to_be_bytes());
        fields.resize(fields.len() + self.pad_d, 0);
        send.apply(&mut fields);
        self.io.queue(&fields);

        let overhead_received = self.io.parsed as u64;
        // The initial payload is decrypted already; what follows it is in
        // the selected method.
        let (mut send, mut receive) = match method {
            Method::Rc4 => (Some(send), Some(receive)),
            Method::Plaintext => (None, None),
        };
        let mut payload = self.io.received.split_off(self.io.parsed);
        if let Some(cipher) = receive.as_mut() {
            cipher.apply(&mut payload[initial_payload_len..]);
        }
        self.outcome = Some(Outcome {
            method,
            info_hash: self.info_hash,
            payload,
            initial_payload_len,
            send: send.take(),
            receive,
            overhead_sent: self.io.queued_total,
            overhead_received,
        });
        self.state = ResponderState::Done;
    }

    /// Bytes to send to the peer, in order.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.io.transmit.is_empty()).then(|| std::mem::take(&mut self.io.transmit))
    }

    /// Whether the handshake is complete (its outcome may still wait for
    /// [`poll_transmit`](Self::poll_transmit) to be drained).
    pub fn is_done(&self) -> bool {
        self.state == ResponderState::Done
    }

    /// The outcome, once the handshake is complete and everything it
    /// queued was taken by [`poll_transmit`](Self::poll_transmit).
    pub fn outcome(&mut self) -> Option<Outcome> {
        if self.io.transmit.is_empty() {
            self.outcome.take()
        } else {
            None
        }
    }

    /// The info-hash the initiator asked for, once req2 was read.
    pub fn info_hash(&self) -> Option<[u8; 20]> {
        matches!(
            self.state,
            ResponderState::ReadProvide
                | ResponderState::ReadPadC { .. }
                | ResponderState::ReadInitialPayload { .. }
                | ResponderState::Done
        )
        .then_some(self.info_hash)
    }
}

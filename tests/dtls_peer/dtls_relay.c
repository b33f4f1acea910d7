/*
 * dtls_relay: a DTLS 1.2 server on GnuTLS in front of a plain-UDP CoAP server.
 *
 * lwgate's DTLS is OpenSSL's; its black-box tests talk to an aiocoap test
 * server over plain UDP. This relay terminates DTLS on a different stack
 * (GnuTLS) and forwards each client's decrypted datagrams to that server from
 * a UDP socket of its own, so the server sees one distinct address per DTLS
 * client and the tests keep their plain-UDP server. A bug shared by client and
 * server stack cannot hide behind a matching bug on the other side.
 *
 * Everything the tests may want to assert on is printed as one JSON object per
 * line on stdout (handshakes with their suite/resumption/failure reason,
 * cookie exchanges, drops, closes). Commands on stdin inject faults at run time.
 * See README.md beside this file for the options.
 *
 * One thread, one poll() loop, non-blocking GnuTLS sessions fed from memory:
 * the listening socket is unconnected and shared by all clients, so each
 * datagram is handed to its client's session through a one-datagram pull
 * buffer, and the session writes back through sendto() on the same socket.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/dtls.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PEERS 64
#define MAX_PSKS 64
#define MAX_RPK_CLIENTS 16
#define SEEN_SLOTS 256
#define CACHE_SLOTS 64
#define MAX_DGRAM 65536
#define MAX_ID 256

enum cert_policy { CERT_REQUIRE, CERT_REQUEST, CERT_NONE };

struct psk {
    unsigned char id[MAX_ID];
    size_t id_len;
    unsigned char key[64];
    size_t key_len;
};

/* Per-address fault-injection counters. They outlive sessions because the
 * first datagrams of a client (its ClientHello before the cookie exchange)
 * arrive while it has no session yet: DTLS servers are stateless until then. */
struct seen {
    int used;
    unsigned char addr[32];
    size_t addr_len;
    unsigned in_dropped, out_dropped;
};

struct peer {
    int used;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    unsigned char key[32]; /* canonical address: the cookie's client data */
    size_t key_len;
    char name[64];
    gnutls_session_t s;
    int established;
    int up_fd, up_port;
    unsigned char hello_random[32]; /* of the ClientHello that began the session */
    const unsigned char *in;        /* the datagram gnutls may pull now */
    size_t in_len;
    int64_t started, last;
    /* What the callbacks learnt, for the event line. */
    char psk_id[MAX_ID + 1];
    size_t psk_id_len;
    int psk_known;
    unsigned discarded; /* records gnutls had dropped before this datagram */
    int in_epoch;       /* this datagram has records of epoch > 0 */
    char verify[512];
};

static struct {
    int listen_fd;
    struct sockaddr_storage upstream;
    socklen_t upstream_len;
    struct psk psks[MAX_PSKS];
    int npsk;
    const char *psk_hint;
    const char *cert, *key, *ca, *rpk_key, *rpk_pub;
    gnutls_datum_t rpk_clients[MAX_RPK_CLIENTS];
    int nrpk_clients;
    enum cert_policy policy;
    int policy_set;
    const char *priority;
    int cookies, tickets, cache, strict;
    unsigned drop_first, drop_first_out, drop_next;
    int64_t blackout_from, blackout_until;
    int blackout_announced;
    unsigned mtu;
    int64_t idle_ms, hs_timeout_ms;
    int64_t t0;
} opt = {.cookies = 1, .tickets = 1, .cache = 1, .strict = 1, .mtu = 1400, .hs_timeout_ms = 60000, .blackout_from = -1};

static gnutls_certificate_credentials_t cert_cred;
static gnutls_psk_server_credentials_t psk_cred;
static gnutls_priority_t prio;
static gnutls_datum_t cookie_key, ticket_key;
static struct peer peers[MAX_PEERS];
static struct seen seen_tab[SEEN_SLOTS];
static unsigned seen_next;
static struct {
    unsigned char key[64];
    size_t klen;
    unsigned char *data;
    size_t dlen;
} cache_tab[CACHE_SLOTS];
static unsigned cache_next;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("dtls_relay: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* ---- events: one JSON object per line ------------------------------------ */

static void jstr(const char *s, size_t n)
{
    /* Client-chosen bytes (PSK identities, DNs) end up here: escape everything
     * that is not printable ASCII so a line is always one valid JSON object. */
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void ev_begin(const char *event)
{
    printf("{\"event\":\"%s\",\"t\":%.3f", event, (now_ms() - opt.t0) / 1000.0);
}
static void ev_str(const char *k, const char *v)
{
    if (!v)
        return;
    printf(",\"%s\":", k);
    jstr(v, strlen(v));
}
static void ev_bytes(const char *k, const char *v, size_t n)
{
    printf(",\"%s\":", k);
    jstr(v, n);
}
static void ev_int(const char *k, long long v) { printf(",\"%s\":%lld", k, v); }
static void ev_bool(const char *k, int v) { printf(",\"%s\":%s", k, v ? "true" : "false"); }
static void ev_end(void)
{
    puts("}");
    fflush(stdout);
}

/* An alert's RFC 5246 name (bad_record_mac): what clients print, unlike
 * GnuTLS's prose ("Bad record MAC"). */
static const char *alert_name(int code)
{
    static char name[64];
    const char *s = gnutls_alert_get_strname((gnutls_alert_description_t)code);
    size_t i = 0;
    if (s && !strncmp(s, "GNUTLS_A_", 9))
        for (s += 9; *s && i < sizeof name - 1; s++)
            name[i++] = (char)(*s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a' : *s);
    name[i] = 0;
    return i ? name : "unknown";
}

static void ev_alert(const char *k, int code)
{
    char key[64];
    ev_str(k, alert_name(code));
    snprintf(key, sizeof key, "%s_code", k);
    ev_int(key, code);
}

/* ---- addresses ------------------------------------------------------------ */

static size_t addr_key(const struct sockaddr_storage *a, unsigned char *out)
{
    /* Family, port and address only: sockaddr padding must not make two
     * datagrams from one client look like two clients (or fail a cookie). */
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const void *)a;
        out[0] = 4;
        memcpy(out + 1, &v4->sin_port, 2);
        memcpy(out + 3, &v4->sin_addr, 4);
        return 7;
    }
    const struct sockaddr_in6 *v6 = (const void *)a;
    out[0] = 6;
    memcpy(out + 1, &v6->sin6_port, 2);
    memcpy(out + 3, &v6->sin6_addr, 16);
    return 19;
}

static void addr_name(const struct sockaddr_storage *a, char *out, size_t n)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const void *)a;
        inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host);
        snprintf(out, n, "%s:%u", host, ntohs(v4->sin_port));
    } else {
        const struct sockaddr_in6 *v6 = (const void *)a;
        inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host);
        snprintf(out, n, "[%s]:%u", host, ntohs(v6->sin6_port));
    }
}

static int sock_port(int fd)
{
    struct sockaddr_storage a;
    socklen_t l = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &l) < 0)
        return -1;
    return ntohs(a.ss_family == AF_INET ? ((struct sockaddr_in *)&a)->sin_port
                                        : ((struct sockaddr_in6 *)&a)->sin6_port);
}

/* "HOST:PORT", "[V6]:PORT" or "PORT" (on 127.0.0.1). */
static void parse_hostport(const char *spec, struct sockaddr_storage *out, socklen_t *len)
{
    char buf[256];
    const char *host = "127.0.0.1", *port = spec;
    if (strlen(spec) >= sizeof buf)
        die("address too long: %s", spec);
    strcpy(buf, spec);
    char *colon = strrchr(buf, ':');
    if (colon) {
        *colon = 0;
        port = colon + 1;
        host = buf;
        if (buf[0] == '[') {
            char *end = strchr(buf, ']');
            if (!end)
                die("bad address %s", spec);
            *end = 0;
            host = buf + 1;
        }
    }
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *res;
    int r = getaddrinfo(host, port, &hints, &res);
    if (r)
        die("cannot resolve %s: %s", spec, gai_strerror(r));
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
}

/* ---- fault injection ------------------------------------------------------ */

static struct seen *seen_get(const unsigned char *key, size_t len)
{
    for (int i = 0; i < SEEN_SLOTS; i++)
        if (seen_tab[i].used && seen_tab[i].addr_len == len && !memcmp(seen_tab[i].addr, key, len))
            return &seen_tab[i];
    struct seen *s = &seen_tab[seen_next++ % SEEN_SLOTS];
    memset(s, 0, sizeof *s);
    s->used = 1;
    memcpy(s->addr, key, len);
    s->addr_len = len;
    return s;
}

static int in_blackout(void)
{
    int64_t t = now_ms();
    return opt.blackout_from >= 0 && t >= opt.blackout_from && t < opt.blackout_until;
}

static void ev_drop(const char *client, const char *dir, const char *why, size_t len)
{
    ev_begin("drop");
    ev_str("client", client);
    ev_str("dir", dir);
    ev_str("reason", why);
    ev_int("len", (long long)len);
    ev_end();
}

/* ---- GnuTLS transport: memory in, sendto() out ----------------------------- */

static ssize_t push(gnutls_transport_ptr_t ptr, const void *buf, size_t size)
{
    struct peer *p = ptr;
    /* A dropped datagram is reported as sent: that is what UDP loss is. */
    if (in_blackout()) {
        ev_drop(p->name, "out", "blackout", size);
        return (ssize_t)size;
    }
    if (!p->established && opt.drop_first_out) {
        struct seen *s = seen_get(p->key, p->key_len);
        if (s->out_dropped < opt.drop_first_out) {
            s->out_dropped++;
            ev_drop(p->name, "out", "drop-first-out", size);
            return (ssize_t)size;
        }
    }
    sendto(opt.listen_fd, buf, size, 0, (struct sockaddr *)&p->addr, p->addrlen);
    return (ssize_t)size;
}

static ssize_t pull(gnutls_transport_ptr_t ptr, void *buf, size_t size)
{
    struct peer *p = ptr;
    if (!p->in) {
        gnutls_transport_set_errno(p->s, EAGAIN);
        return -1;
    }
    size_t n = p->in_len < size ? p->in_len : size;
    memcpy(buf, p->in, n);
    p->in = NULL;
    p->in_len = 0;
    return (ssize_t)n;
}

static int pull_timeout(gnutls_transport_ptr_t ptr, unsigned int ms)
{
    (void)ms; /* never wait: the poll() loop does the waiting */
    return ((struct peer *)ptr)->in ? 1 : 0;
}

/* ---- credentials callbacks ------------------------------------------------- */

static int psk_lookup(gnutls_session_t s, const gnutls_datum_t *user, gnutls_datum_t *key)
{
    struct peer *p = gnutls_session_get_ptr(s);
    size_t n = user->size < MAX_ID ? user->size : MAX_ID;
    memcpy(p->psk_id, user->data, n);
    p->psk_id_len = n;
    for (int i = 0; i < opt.npsk; i++) {
        if (opt.psks[i].id_len == user->size && !memcmp(opt.psks[i].id, user->data, user->size)) {
            key->data = gnutls_malloc(opt.psks[i].key_len);
            if (!key->data)
                return -1;
            memcpy(key->data, opt.psks[i].key, opt.psks[i].key_len);
            key->size = opt.psks[i].key_len;
            p->psk_known = 1;
            return 0;
        }
    }
    p->psk_known = 0;
    return -1;
}

static int verify_client(gnutls_session_t s)
{
    struct peer *p = gnutls_session_get_ptr(s);
    unsigned n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(s, &n);
    if (!certs || !n) {
        if (opt.policy == CERT_REQUIRE) {
            snprintf(p->verify, sizeof p->verify, "no client certificate");
            return -1;
        }
        return 0;
    }
    if (gnutls_certificate_type_get2(s, GNUTLS_CTYPE_PEERS) == GNUTLS_CRT_RAWPK) {
        if (!opt.nrpk_clients)
            return 0; /* any key; the event line names it for the test to judge */
        for (int i = 0; i < opt.nrpk_clients; i++)
            if (opt.rpk_clients[i].size == certs[0].size &&
                !memcmp(opt.rpk_clients[i].data, certs[0].data, certs[0].size))
                return 0;
        snprintf(p->verify, sizeof p->verify, "raw public key not among --rpk-client keys");
        return -1;
    }
    if (!opt.ca) {
        snprintf(p->verify, sizeof p->verify, "no --ca to verify the client certificate with");
        return -1;
    }
    unsigned status = 0;
    int r = gnutls_certificate_verify_peers2(s, &status);
    if (r < 0) {
        snprintf(p->verify, sizeof p->verify, "%s", gnutls_strerror(r));
        return -1;
    }
    if (status) {
        gnutls_datum_t out = {0};
        if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) == 0) {
            snprintf(p->verify, sizeof p->verify, "%s", (char *)out.data);
            gnutls_free(out.data);
            for (size_t n = strlen(p->verify); n && p->verify[n - 1] == ' ';)
                p->verify[--n] = 0;
        } else {
            snprintf(p->verify, sizeof p->verify, "verification status 0x%x", status);
        }
        return -1;
    }
    return 0;
}

/* Session-ID resumption (tickets are the other way; clients differ in which
 * they use, so both are on unless switched off). */
static int db_store(void *ptr, gnutls_datum_t key, gnutls_datum_t data)
{
    (void)ptr;
    if (key.size > sizeof cache_tab[0].key)
        return -1;
    unsigned i = cache_next++ % CACHE_SLOTS;
    unsigned char *copy = malloc(data.size);
    if (!copy)
        return -1;
    free(cache_tab[i].data);
    memcpy(cache_tab[i].key, key.data, key.size);
    cache_tab[i].klen = key.size;
    memcpy(copy, data.data, data.size);
    cache_tab[i].data = copy;
    cache_tab[i].dlen = data.size;
    return 0;
}

static int db_find(gnutls_datum_t key)
{
    for (int i = 0; i < CACHE_SLOTS; i++)
        if (cache_tab[i].data && cache_tab[i].klen == key.size && !memcmp(cache_tab[i].key, key.data, key.size))
            return i;
    return -1;
}

static gnutls_datum_t db_fetch(void *ptr, gnutls_datum_t key)
{
    (void)ptr;
    gnutls_datum_t out = {NULL, 0};
    int i = db_find(key);
    if (i >= 0 && (out.data = gnutls_malloc(cache_tab[i].dlen))) {
        memcpy(out.data, cache_tab[i].data, cache_tab[i].dlen);
        out.size = cache_tab[i].dlen;
    }
    return out;
}

static int db_remove(void *ptr, gnutls_datum_t key)
{
    (void)ptr;
    int i = db_find(key);
    if (i < 0)
        return -1;
    free(cache_tab[i].data);
    cache_tab[i].data = NULL;
    return 0;
}

static void cache_clear(void)
{
    for (int i = 0; i < CACHE_SLOTS; i++) {
        free(cache_tab[i].data);
        cache_tab[i].data = NULL;
    }
}

/* ---- sessions --------------------------------------------------------------- */

static struct peer *peer_find(const unsigned char *key, size_t len)
{
    for (int i = 0; i < MAX_PEERS; i++)
        if (peers[i].used && peers[i].key_len == len && !memcmp(peers[i].key, key, len))
            return &peers[i];
    return NULL;
}

/* keep_up: the client starts a new association from the same address; its
 * upstream socket stays so the CoAP server still sees the same client. */
static void peer_free(struct peer *p, int keep_up)
{
    if (p->s)
        gnutls_deinit(p->s);
    if (p->up_fd >= 0 && !keep_up)
        close(p->up_fd);
    memset(p, 0, sizeof *p);
    p->up_fd = -1;
}

static void ev_closed(struct peer *p, const char *why)
{
    ev_begin("closed");
    ev_str("client", p->name);
    ev_str("reason", why);
    ev_bool("established", p->established);
    ev_end();
}

static int upstream_socket(void)
{
    int fd = socket(opt.upstream.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&opt.upstream, opt.upstream_len) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void hexstr(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
    out[2 * n] = 0;
}

static void ev_peer_identity(struct peer *p)
{
    /* RFC 6066 allows host names only; GnuTLS refuses a ClientHello whose SNI
     * is an IPv6 literal, and lets an IPv4 one ("127.0.0.1") through: shown
     * here so a test can tell that its client sent one. */
    char sni[256];
    size_t sni_len = sizeof sni;
    unsigned sni_type;
    if (gnutls_server_name_get(p->s, sni, &sni_len, &sni_type, 0) == 0 && sni_type == GNUTLS_NAME_DNS)
        ev_bytes("sni", sni, strnlen(sni, sni_len));
    gnutls_datum_t user = {0};
    if (!p->psk_id_len && gnutls_psk_server_get_username2(p->s, &user) == 0 && user.size) {
        /* A resumed session: the PSK callback did not run this time. */
        p->psk_id_len = user.size < MAX_ID ? user.size : MAX_ID;
        memcpy(p->psk_id, user.data, p->psk_id_len);
        p->psk_known = 1;
    }
    if (p->psk_id_len) {
        ev_bytes("psk_identity", p->psk_id, p->psk_id_len);
        ev_bool("psk_identity_known", p->psk_known);
    }
    unsigned n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(p->s, &n);
    if (!certs || !n)
        return;
    if (gnutls_certificate_type_get2(p->s, GNUTLS_CTYPE_PEERS) == GNUTLS_CRT_RAWPK) {
        unsigned char h[32];
        char hex[65];
        if (gnutls_hash_fast(GNUTLS_DIG_SHA256, certs[0].data, certs[0].size, h) == 0) {
            hexstr(h, 32, hex);
            ev_str("peer_key_sha256", hex);
        }
        return;
    }
    gnutls_x509_crt_t crt;
    gnutls_datum_t dn = {0};
    if (gnutls_x509_crt_init(&crt) < 0)
        return;
    if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == 0 && gnutls_x509_crt_get_dn3(crt, &dn, 0) == 0) {
        ev_bytes("peer_dn", (char *)dn.data, dn.size);
        gnutls_free(dn.data);
    }
    gnutls_x509_crt_deinit(crt);
}

static void record_step(struct peer *p);

static void handshake_failed(struct peer *p, int r, int alert, const char *reason);

static void handshake_step(struct peer *p)
{
    int r = gnutls_handshake(p->s);
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
        /* GnuTLS drops a DTLS record that fails to decrypt, as RFC 6347 lets
         * it, so a client with the wrong PSK would just see the handshake
         * time out after a minute. A record of the new epoch that fails before
         * the handshake is done is the client's Finished under a different
         * key: end it there with bad_record_mac, as most servers do. */
        if (opt.strict && p->in_epoch && gnutls_record_get_discarded(p->s) > p->discarded)
            handshake_failed(p, GNUTLS_E_DECRYPTION_FAILED, GNUTLS_A_BAD_RECORD_MAC,
                             "a record of the handshake failed to decrypt: the client's keys differ (wrong PSK?)");
        return;
    }
    if (r == 0) {
        if (p->up_fd < 0)
            p->up_fd = upstream_socket();
        p->established = 1;
        p->up_port = p->up_fd >= 0 ? sock_port(p->up_fd) : -1;
        char *desc = gnutls_session_get_desc(p->s);
        ev_begin("handshake");
        ev_bool("ok", 1);
        ev_str("client", p->name);
        ev_int("upstream_port", p->up_port);
        ev_str("version", gnutls_protocol_get_name(gnutls_protocol_get_version(p->s)));
        ev_str("suite", gnutls_ciphersuite_get(p->s));
        ev_str("kx", gnutls_kx_get_name(gnutls_kx_get(p->s)));
        ev_str("cipher", gnutls_cipher_get_name(gnutls_cipher_get(p->s)));
        ev_str("mac", gnutls_mac_get_name(gnutls_mac_get(p->s)));
        if (gnutls_auth_get_type(p->s) == GNUTLS_CRD_CERTIFICATE)
            ev_str("cert_type", gnutls_certificate_type_get_name(gnutls_certificate_type_get2(p->s, GNUTLS_CTYPE_SERVER)));
        ev_bool("resumed", gnutls_session_is_resumed(p->s));
        ev_str("desc", desc);
        ev_peer_identity(p);
        ev_end();
        gnutls_free(desc);
        if (p->up_fd < 0) {
            ev_closed(p, "cannot open the upstream socket");
            peer_free(p, 0);
            return;
        }
        record_step(p); /* records that came in the same datagram as the Finished */
        return;
    }
    if (!gnutls_error_is_fatal(r)) {
        ev_begin("handshake_warning");
        ev_str("client", p->name);
        ev_str("error", gnutls_strerror_name(r));
        if (r == GNUTLS_E_WARNING_ALERT_RECEIVED)
            ev_alert("alert_received", gnutls_alert_get(p->s));
        ev_end();
        return;
    }
    handshake_failed(p, r, -1, NULL);
}

/* alert: what to send instead of GnuTLS's choice (-1: its choice). */
static void handshake_failed(struct peer *p, int r, int alert, const char *reason)
{
    ev_begin("handshake");
    ev_bool("ok", 0);
    ev_str("client", p->name);
    ev_str("error", gnutls_strerror_name(r));
    if (p->psk_id_len && !p->psk_known) {
        /* GnuTLS says "Error in password/key file" and sends internal_error. */
        reason = "unknown PSK identity";
        alert = GNUTLS_A_UNKNOWN_PSK_IDENTITY;
    }
    ev_str("reason", reason ? reason : gnutls_strerror(r));
    if (r == GNUTLS_E_FATAL_ALERT_RECEIVED) {
        ev_alert("alert_received", gnutls_alert_get(p->s));
    } else {
        int level;
        if (alert < 0)
            alert = gnutls_error_to_alert(r, &level);
        if (alert >= 0) {
            ev_alert("alert_sent", alert);
            gnutls_alert_send(p->s, GNUTLS_AL_FATAL, (gnutls_alert_description_t)alert);
        }
    }
    if (p->verify[0])
        ev_str("verify", p->verify);
    ev_peer_identity(p);
    ev_end();
    peer_free(p, 0);
}

static void record_step(struct peer *p)
{
    static unsigned char buf[MAX_DGRAM];
    /* Bounded: a datagram holds a bounded number of records, and a non-fatal
     * error that gnutls keeps returning must not spin the loop. */
    for (int i = 0; i < 64; i++) {
        ssize_t r = gnutls_record_recv(p->s, buf, sizeof buf);
        if (r > 0) {
            send(p->up_fd, buf, (size_t)r, 0);
            continue;
        }
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
            return;
        if (r == 0) {
            ev_closed(p, "close_notify");
            peer_free(p, 0);
            return;
        }
        if (r == GNUTLS_E_REHANDSHAKE) {
            /* The client renegotiates inside the association. */
            ev_begin("renegotiation");
            ev_str("client", p->name);
            ev_end();
            p->established = 0;
            p->started = now_ms();
            handshake_step(p);
            return;
        }
        if (!gnutls_error_is_fatal((int)r)) {
            ev_begin("record_warning");
            ev_str("client", p->name);
            ev_str("error", gnutls_strerror_name((int)r));
            if (r == GNUTLS_E_WARNING_ALERT_RECEIVED)
                ev_alert("alert_received", gnutls_alert_get(p->s));
            ev_end();
            continue;
        }
        char why[256];
        if (r == GNUTLS_E_FATAL_ALERT_RECEIVED)
            snprintf(why, sizeof why, "alert received: %s", alert_name(gnutls_alert_get(p->s)));
        else
            snprintf(why, sizeof why, "%s", gnutls_strerror((int)r));
        ev_closed(p, why);
        peer_free(p, 0);
        return;
    }
}

/* Whether a datagram holds a record of an epoch past 0 (encrypted). A
 * client's Finished flight is usually ClientKeyExchange, ChangeCipherSpec and
 * Finished in one datagram: only the last record is of epoch 1. */
static int has_epoch(const unsigned char *d, size_t n)
{
    for (size_t o = 0; o + 13 <= n; o += 13 + ((size_t)d[o + 11] << 8 | d[o + 12]))
        if (d[o + 3] || d[o + 4])
            return 1;
    return 0;
}

static void feed(struct peer *p, const unsigned char *d, size_t n)
{
    p->in = d;
    p->in_len = n;
    p->last = now_ms();
    if (!p->established) {
        p->discarded = gnutls_record_get_discarded(p->s);
        p->in_epoch = has_epoch(d, n);
        handshake_step(p);
    }
    else
        record_step(p);
    if (p->used) { /* whatever gnutls did not pull is lost, as on the wire */
        p->in = NULL;
        p->in_len = 0;
    }
}

static struct peer *peer_new(const struct sockaddr_storage *addr, socklen_t alen, const unsigned char *key,
                             size_t klen, gnutls_dtls_prestate_st *prestate, int up_fd)
{
    struct peer *p = NULL;
    for (int i = 0; i < MAX_PEERS && !p; i++)
        if (!peers[i].used)
            p = &peers[i];
    char name[64];
    addr_name(addr, name, sizeof name);
    if (!p) {
        ev_begin("full");
        ev_str("client", name);
        ev_end();
        if (up_fd >= 0)
            close(up_fd);
        return NULL;
    }
    memset(p, 0, sizeof *p);
    p->used = 1;
    p->up_fd = up_fd;
    memcpy(&p->addr, addr, alen);
    p->addrlen = alen;
    memcpy(p->key, key, klen);
    p->key_len = klen;
    strcpy(p->name, name);
    p->started = p->last = now_ms();
    unsigned flags = GNUTLS_SERVER | GNUTLS_DATAGRAM | GNUTLS_NONBLOCK;
    if (opt.rpk_key)
        flags |= GNUTLS_ENABLE_RAWPK;
    if (gnutls_init(&p->s, flags) < 0) {
        p->s = NULL;
        peer_free(p, 0);
        return NULL;
    }
    gnutls_session_set_ptr(p->s, p);
    gnutls_priority_set(p->s, prio);
    if (cert_cred) {
        gnutls_credentials_set(p->s, GNUTLS_CRD_CERTIFICATE, cert_cred);
        gnutls_certificate_server_set_request(
            p->s, opt.policy == CERT_REQUIRE ? GNUTLS_CERT_REQUIRE
                                             : opt.policy == CERT_REQUEST ? GNUTLS_CERT_REQUEST : GNUTLS_CERT_IGNORE);
    }
    if (psk_cred)
        gnutls_credentials_set(p->s, GNUTLS_CRD_PSK, psk_cred);
    if (opt.tickets)
        gnutls_session_ticket_enable_server(p->s, &ticket_key);
    if (opt.cache) {
        gnutls_db_set_retrieve_function(p->s, db_fetch);
        gnutls_db_set_store_function(p->s, db_store);
        gnutls_db_set_remove_function(p->s, db_remove);
        gnutls_db_set_ptr(p->s, NULL);
    }
    gnutls_transport_set_ptr(p->s, p);
    gnutls_transport_set_push_function(p->s, push);
    gnutls_transport_set_pull_function(p->s, pull);
    gnutls_transport_set_pull_timeout_function(p->s, pull_timeout);
    gnutls_dtls_set_mtu(p->s, opt.mtu);
    gnutls_dtls_set_timeouts(p->s, 1000, (unsigned)opt.hs_timeout_ms);
    if (prestate)
        gnutls_dtls_prestate_set(p->s, prestate);
    return p;
}

/* The random of an unfragmented-start ClientHello at epoch 0, or NULL.
 * DTLS record header: type(1) version(2) epoch(2) seq(6) length(2); then the
 * handshake header: type(1) length(3) message_seq(2) frag_offset(3)
 * frag_length(3); then client_version(2) and random(32). */
static const unsigned char *client_hello_random(const unsigned char *d, size_t n)
{
    if (n < 13 + 12 + 2 + 32)
        return NULL;
    if (d[0] != 22 || d[3] != 0 || d[4] != 0 || d[13] != 1)
        return NULL;
    if (d[19] || d[20] || d[21])
        return NULL;
    return d + 27;
}

static void client_datagram(const struct sockaddr_storage *addr, socklen_t alen, const unsigned char *d, size_t n)
{
    unsigned char key[32];
    size_t klen = addr_key(addr, key);
    char name[64];
    addr_name(addr, name, sizeof name);
    if (in_blackout()) {
        ev_drop(name, "in", "blackout", n);
        return;
    }
    if (opt.drop_next) {
        opt.drop_next--;
        ev_drop(name, "in", "drop", n);
        return;
    }
    struct peer *p = peer_find(key, klen);
    if (opt.drop_first && (!p || !p->established)) {
        struct seen *s = seen_get(key, klen);
        if (s->in_dropped < opt.drop_first) {
            s->in_dropped++;
            ev_drop(name, "in", "drop-first", n);
            return;
        }
    }
    const unsigned char *random = client_hello_random(d, n);
    if (p && !(random && memcmp(random, p->hello_random, 32))) {
        feed(p, d, n);
        return;
    }
    if (!random) {
        /* Records for an association this server does not have (forgotten,
         * timed out, never made): a real server ignores them, so do we. */
        ev_begin("stray");
        ev_str("client", name);
        ev_int("content_type", n ? d[0] : -1);
        ev_int("len", (long long)n);
        ev_end();
        return;
    }
    gnutls_dtls_prestate_st prestate;
    memset(&prestate, 0, sizeof prestate);
    if (opt.cookies && gnutls_dtls_cookie_verify(&cookie_key, key, klen, (void *)d, n, &prestate) < 0) {
        /* Stateless, as RFC 6347 4.2.1 wants: no session until the client
         * proves it receives at its address. */
        struct peer tmp;
        memset(&tmp, 0, sizeof tmp);
        memcpy(&tmp.addr, addr, alen);
        tmp.addrlen = alen;
        memcpy(tmp.key, key, klen);
        tmp.key_len = klen;
        strcpy(tmp.name, name);
        gnutls_dtls_cookie_send(&cookie_key, key, klen, &prestate, &tmp, push);
        ev_begin("hello_verify");
        ev_str("client", name);
        ev_end();
        return;
    }
    int up_fd = -1;
    if (p) {
        /* A new ClientHello with a valid cookie: the client has started over
         * (rebooted, or gave up on the old association) from the same port. */
        ev_closed(p, "new association from the same address");
        up_fd = p->up_fd;
        peer_free(p, 1);
    }
    p = peer_new(addr, alen, key, klen, opt.cookies ? &prestate : NULL, up_fd);
    if (!p)
        return;
    memcpy(p->hello_random, random, 32);
    feed(p, d, n);
}

static void upstream_datagram(struct peer *p)
{
    static unsigned char buf[MAX_DGRAM];
    ssize_t n = recv(p->up_fd, buf, sizeof buf, 0);
    if (n < 0)
        return; /* ICMP errors from a stopped server and the like */
    ssize_t r = gnutls_record_send(p->s, buf, (size_t)n);
    if (r < 0) {
        ev_begin("send_error");
        ev_str("client", p->name);
        ev_str("error", gnutls_strerror_name((int)r));
        ev_int("len", (long long)n);
        ev_end();
        if (gnutls_error_is_fatal((int)r)) {
            ev_closed(p, gnutls_strerror((int)r));
            peer_free(p, 0);
        }
    }
}

static void new_keys(void)
{
    gnutls_free(cookie_key.data);
    gnutls_free(ticket_key.data);
    if (gnutls_key_generate(&cookie_key, GNUTLS_COOKIE_KEY_SIZE) < 0 || gnutls_session_ticket_key_generate(&ticket_key) < 0)
        die("cannot generate keys");
}

/* ---- stdin commands ---------------------------------------------------------- */

static void command(char *line)
{
    char *arg = strchr(line, ' ');
    if (arg)
        *arg++ = 0;
    int ok = 1;
    if (!strcmp(line, "drop") && arg) {
        opt.drop_next = (unsigned)strtoul(arg, NULL, 10);
    } else if (!strcmp(line, "blackout") && arg) {
        opt.blackout_from = now_ms();
        opt.blackout_until = opt.blackout_from + (int64_t)(strtod(arg, NULL) * 1000);
        opt.blackout_announced = 0;
    } else if (!strcmp(line, "forget") || !strcmp(line, "restart") || !strcmp(line, "close")) {
        for (int i = 0; i < MAX_PEERS; i++) {
            if (!peers[i].used)
                continue;
            if (!strcmp(line, "close") && peers[i].established)
                gnutls_bye(peers[i].s, GNUTLS_SHUT_WR);
            ev_closed(&peers[i], line);
            peer_free(&peers[i], 0);
        }
        if (!strcmp(line, "restart")) {
            /* What a restarted server has lost: its cache and its keys. */
            cache_clear();
            new_keys();
        }
    } else if (!strcmp(line, "sessions")) {
        for (int i = 0; i < MAX_PEERS; i++) {
            if (!peers[i].used)
                continue;
            ev_begin("session");
            ev_str("client", peers[i].name);
            ev_bool("established", peers[i].established);
            ev_int("upstream_port", peers[i].up_port);
            ev_end();
        }
    } else {
        ok = 0;
    }
    ev_begin("command");
    ev_str("command", line);
    ev_str("arg", arg);
    ev_bool("ok", ok);
    ev_end();
}

static int stdin_readable(void)
{
    static char buf[1024];
    static size_t len;
    ssize_t n = read(0, buf + len, sizeof buf - 1 - len);
    if (n <= 0)
        return n == 0 || (errno != EAGAIN && errno != EINTR) ? -1 : 0;
    len += (size_t)n;
    char *nl;
    while ((nl = memchr(buf, '\n', len))) {
        *nl = 0;
        size_t used = (size_t)(nl - buf) + 1;
        if (nl > buf && nl[-1] == '\r')
            nl[-1] = 0;
        if (buf[0])
            command(buf);
        memmove(buf, buf + used, len - used);
        len -= used;
    }
    if (len == sizeof buf - 1)
        len = 0; /* an overlong line: forget it */
    return 0;
}

/* ---- set-up -------------------------------------------------------------------- */

static size_t unhex(const char *hex, unsigned char *out, size_t max)
{
    if (!strncmp(hex, "0x", 2) || !strncmp(hex, "0X", 2))
        hex += 2;
    size_t n = strlen(hex);
    if (n == 0 || n % 2 || n / 2 > max)
        return 0;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1 || !strchr("0123456789abcdefABCDEF", hex[2 * i]) ||
            !strchr("0123456789abcdefABCDEF", hex[2 * i + 1]))
            return 0;
        out[i] = (unsigned char)v;
    }
    return n / 2;
}

/* "IDENTITY:HEXKEY": split at the last colon, since LwM2M identities are
 * often URNs with colons of their own and hex has none. */
static void add_psk(const char *spec)
{
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec)
        die("PSK must be IDENTITY:HEXKEY, got %s", spec);
    if (opt.npsk == MAX_PSKS)
        die("too many PSKs (max %d)", MAX_PSKS);
    struct psk *k = &opt.psks[opt.npsk];
    k->id_len = (size_t)(colon - spec);
    if (k->id_len > MAX_ID)
        die("PSK identity too long");
    memcpy(k->id, spec, k->id_len);
    k->key_len = unhex(colon + 1, k->key, sizeof k->key);
    if (!k->key_len)
        die("PSK key must be 1-64 bytes of hex: %s", spec);
    opt.npsk++;
}

static void load_psk_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die("cannot open %s", path);
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        char *s = line + strspn(line, " \t");
        if (*s && *s != '#')
            add_psk(s);
    }
    fclose(f);
}

static void add_rpk_client(const char *path)
{
    gnutls_datum_t pem;
    gnutls_pubkey_t pk;
    if (opt.nrpk_clients == MAX_RPK_CLIENTS)
        die("too many --rpk-client keys");
    if (gnutls_load_file(path, &pem) < 0)
        die("cannot read %s", path);
    if (gnutls_pubkey_init(&pk) < 0 || gnutls_pubkey_import(pk, &pem, GNUTLS_X509_FMT_PEM) < 0)
        die("%s: not a PEM public key", path);
    if (gnutls_pubkey_export2(pk, GNUTLS_X509_FMT_DER, &opt.rpk_clients[opt.nrpk_clients]) < 0)
        die("%s: cannot export the key", path);
    opt.nrpk_clients++;
    gnutls_pubkey_deinit(pk);
    gnutls_free(pem.data);
}

static void log_cb(int level, const char *msg) { fprintf(stderr, "gnutls[%d]: %s", level, msg); }

static void usage(void)
{
    fputs("usage: dtls_relay --upstream HOST:PORT [--listen HOST:PORT] [options]\n"
          "  --psk ID:HEX          a PSK identity and its key (repeatable)\n"
          "  --psk-file FILE       lines of ID:HEX ('#' comments)\n"
          "  --psk-hint HINT       identity hint sent in ServerKeyExchange\n"
          "  --cert FILE --key FILE  X.509 server certificate (chain) and key, PEM\n"
          "  --ca FILE             CA(s) to verify client certificates with, PEM\n"
          "  --rpk-pub FILE --rpk-key FILE  raw public key (RFC 7250) server key pair, PEM\n"
          "  --rpk-client FILE     accept only this client raw public key, PEM (repeatable)\n"
          "  --client-cert require|request|none   (require when any cert/RPK is set)\n"
          "  --priority STR        GnuTLS priority; '+X'/'-X'/'%X' appends to the default\n"
          "  --no-cookie --no-tickets --no-cache\n"
          "  --lenient             keep GnuTLS's silent discard of a handshake record that fails\n"
          "                        to decrypt (wrong PSK: the client times out, no alert)\n"
          "  --drop-first N        drop a client's first N datagrams before its handshake ends\n"
          "  --drop-first-out N    drop the first N handshake datagrams to each client\n"
          "  --blackout AT:FOR     drop everything from AT s after start, for FOR s\n"
          "  --mtu N (1400) --idle SECONDS (0: never) --handshake-timeout SECONDS (60)\n"
          "  --debug N             GnuTLS log level, to stderr\n"
          "stdin commands: drop N | blackout SECONDS | forget | restart | close | sessions\n",
          stderr);
    exit(2);
}

static void setup(void)
{
    int r;
    const char *err;
    new_keys();
    if (opt.npsk) {
        if (gnutls_psk_allocate_server_credentials(&psk_cred) < 0)
            die("psk credentials");
        gnutls_psk_set_server_credentials_function2(psk_cred, psk_lookup);
        if (opt.psk_hint)
            gnutls_psk_set_server_credentials_hint(psk_cred, opt.psk_hint);
    }
    if (opt.cert || opt.rpk_key) {
        if (gnutls_certificate_allocate_credentials(&cert_cred) < 0)
            die("certificate credentials");
        if (opt.cert) {
            if (!opt.key)
                die("--cert needs --key");
            if ((r = gnutls_certificate_set_x509_key_file(cert_cred, opt.cert, opt.key, GNUTLS_X509_FMT_PEM)) < 0)
                die("%s / %s: %s", opt.cert, opt.key, gnutls_strerror(r));
        }
        if (opt.rpk_key) {
            if (!opt.rpk_pub)
                die("--rpk-key needs --rpk-pub");
            if ((r = gnutls_certificate_set_rawpk_key_file(cert_cred, opt.rpk_pub, opt.rpk_key, GNUTLS_X509_FMT_PEM,
                                                           NULL, GNUTLS_KEY_DIGITAL_SIGNATURE, NULL, 0, 0, 0)) < 0)
                die("%s / %s: %s", opt.rpk_pub, opt.rpk_key, gnutls_strerror(r));
        }
        if (opt.ca && (r = gnutls_certificate_set_x509_trust_file(cert_cred, opt.ca, GNUTLS_X509_FMT_PEM)) <= 0)
            die("%s: no CA certificate loaded (%s)", opt.ca, r < 0 ? gnutls_strerror(r) : "empty");
        gnutls_certificate_set_verify_function(cert_cred, verify_client);
        if (!opt.policy_set)
            opt.policy = CERT_REQUIRE;
    } else if (!opt.npsk) {
        die("no credentials: give --psk/--psk-file, --cert/--key or --rpk-pub/--rpk-key");
    }
    /* DTLS 1.2 only, with the CCM_8 suites LwM2M mandates added to NORMAL. */
    static char pstr[1024];
    const char *user = opt.priority ? opt.priority : "";
    if (user[0] && !strchr("+-%!", user[0])) {
        snprintf(pstr, sizeof pstr, "%s", user);
    } else {
        snprintf(pstr, sizeof pstr, "NORMAL:-VERS-ALL:+VERS-DTLS1.2:+AES-128-CCM-8:+AES-256-CCM-8%s%s%s%s",
                 opt.npsk ? ":+PSK:+ECDHE-PSK" : "", opt.rpk_key ? ":+CTYPE-CLI-ALL:+CTYPE-SRV-ALL" : "",
                 user[0] ? ":" : "", user);
    }
    if ((r = gnutls_priority_init(&prio, pstr, &err)) < 0)
        die("priority '%s': %s at '%s'", pstr, gnutls_strerror(r), err ? err : "?");
    opt.priority = pstr;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", 1, 0, 'l'},        {"upstream", 1, 0, 'u'},     {"psk", 1, 0, 'p'},
        {"psk-file", 1, 0, 'P'},      {"psk-hint", 1, 0, 'H'},     {"cert", 1, 0, 'c'},
        {"key", 1, 0, 'k'},           {"ca", 1, 0, 'C'},           {"rpk-pub", 1, 0, 'r'},
        {"rpk-key", 1, 0, 'R'},       {"rpk-client", 1, 0, 'K'},   {"client-cert", 1, 0, 'V'},
        {"priority", 1, 0, 'S'},      {"no-cookie", 0, 0, 1},      {"no-tickets", 0, 0, 2},
        {"no-cache", 0, 0, 3},        {"drop-first", 1, 0, 4},     {"drop-first-out", 1, 0, 5},
        {"blackout", 1, 0, 6},        {"mtu", 1, 0, 7},            {"idle", 1, 0, 8},
        {"handshake-timeout", 1, 0, 9}, {"debug", 1, 0, 10},      {"lenient", 0, 0, 11},       {"help", 0, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *listen_spec = "127.0.0.1:0", *upstream_spec = NULL;
    int c;
    double at, dur;
    opt.t0 = now_ms();
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    if (gnutls_global_init() < 0)
        die("gnutls_global_init");
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'l': listen_spec = optarg; break;
        case 'u': upstream_spec = optarg; break;
        case 'p': add_psk(optarg); break;
        case 'P': load_psk_file(optarg); break;
        case 'H': opt.psk_hint = optarg; break;
        case 'c': opt.cert = optarg; break;
        case 'k': opt.key = optarg; break;
        case 'C': opt.ca = optarg; break;
        case 'r': opt.rpk_pub = optarg; break;
        case 'R': opt.rpk_key = optarg; break;
        case 'K': add_rpk_client(optarg); break;
        case 'V':
            opt.policy_set = 1;
            if (!strcmp(optarg, "require"))
                opt.policy = CERT_REQUIRE;
            else if (!strcmp(optarg, "request"))
                opt.policy = CERT_REQUEST;
            else if (!strcmp(optarg, "none"))
                opt.policy = CERT_NONE;
            else
                usage();
            break;
        case 'S': opt.priority = optarg; break;
        case 1: opt.cookies = 0; break;
        case 2: opt.tickets = 0; break;
        case 3: opt.cache = 0; break;
        case 4: opt.drop_first = (unsigned)strtoul(optarg, NULL, 10); break;
        case 5: opt.drop_first_out = (unsigned)strtoul(optarg, NULL, 10); break;
        case 6:
            if (sscanf(optarg, "%lf:%lf", &at, &dur) != 2 || at < 0 || dur < 0)
                usage();
            opt.blackout_from = opt.t0 + (int64_t)(at * 1000);
            opt.blackout_until = opt.blackout_from + (int64_t)(dur * 1000);
            break;
        case 7: opt.mtu = (unsigned)strtoul(optarg, NULL, 10); break;
        case 8: opt.idle_ms = (int64_t)(strtod(optarg, NULL) * 1000); break;
        case 9: opt.hs_timeout_ms = (int64_t)(strtod(optarg, NULL) * 1000); break;
        case 10:
            gnutls_global_set_log_function(log_cb);
            gnutls_global_set_log_level(atoi(optarg));
            break;
        case 11: opt.strict = 0; break;
        default: usage();
        }
    }
    if (!upstream_spec || optind != argc)
        usage();
    if (opt.mtu < 256 || opt.mtu > 16384)
        die("--mtu must be 256..16384");
    parse_hostport(upstream_spec, &opt.upstream, &opt.upstream_len);
    setup();

    struct sockaddr_storage la;
    socklen_t llen;
    parse_hostport(listen_spec, &la, &llen);
    opt.listen_fd = socket(la.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (opt.listen_fd < 0 || bind(opt.listen_fd, (struct sockaddr *)&la, llen) < 0)
        die("cannot bind %s: %s", listen_spec, strerror(errno));
    for (int i = 0; i < MAX_PEERS; i++)
        peers[i].up_fd = -1;

    char lname[64], uname[64];
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    getsockname(opt.listen_fd, (struct sockaddr *)&bound, &blen);
    addr_name(&bound, lname, sizeof lname);
    addr_name(&opt.upstream, uname, sizeof uname);
    ev_begin("listening");
    ev_str("address", lname);
    ev_int("port", sock_port(opt.listen_fd));
    ev_str("upstream", uname);
    ev_str("priority", opt.priority);
    ev_str("gnutls", gnutls_check_version(NULL));
    ev_end();

    int stdin_open = 1;
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    static unsigned char buf[MAX_DGRAM];
    for (;;) {
        struct pollfd fds[2 + MAX_PEERS];
        struct peer *owner[2 + MAX_PEERS];
        int nfds = 0;
        int64_t t = now_ms(), timeout = 1000;
        fds[nfds++] = (struct pollfd){.fd = opt.listen_fd, .events = POLLIN};
        fds[nfds++] = (struct pollfd){.fd = stdin_open ? 0 : -1, .events = POLLIN};
        for (int i = 0; i < MAX_PEERS; i++) {
            struct peer *p = &peers[i];
            if (!p->used)
                continue;
            if (p->established && p->up_fd >= 0) {
                owner[nfds] = p;
                fds[nfds++] = (struct pollfd){.fd = p->up_fd, .events = POLLIN};
            } else if (!p->established) {
                int64_t d = gnutls_dtls_get_timeout(p->s);
                timeout = d < timeout ? d : timeout;
            }
        }
        if (opt.blackout_from >= 0 && t < opt.blackout_until) {
            int64_t edge = t < opt.blackout_from ? opt.blackout_from : opt.blackout_until;
            timeout = edge - t < timeout ? edge - t : timeout;
        }
        /* Never 0: a session whose timer gnutls leaves at 0 must not spin us. */
        if (timeout < 5)
            timeout = 5;
        if (poll(fds, (nfds_t)nfds, (int)timeout) < 0 && errno != EINTR)
            die("poll: %s", strerror(errno));

        if (fds[0].revents & POLLIN) {
            for (int k = 0; k < 64; k++) { /* a burst, then the other sockets get a turn */
                struct sockaddr_storage from;
                socklen_t flen = sizeof from;
                ssize_t n = recvfrom(opt.listen_fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
                if (n < 0)
                    break;
                if (from.ss_family == AF_INET || from.ss_family == AF_INET6)
                    client_datagram(&from, flen, buf, (size_t)n);
            }
        }
        if ((fds[1].revents & (POLLIN | POLLHUP | POLLERR)) && stdin_readable() < 0)
            stdin_open = 0;
        for (int i = 2; i < nfds; i++)
            if ((fds[i].revents & POLLIN) && owner[i]->used && owner[i]->up_fd == fds[i].fd)
                upstream_datagram(owner[i]);

        t = now_ms();
        if (opt.blackout_from >= 0 && !opt.blackout_announced && t >= opt.blackout_from) {
            ev_begin("blackout");
            ev_int("ms", opt.blackout_until - opt.blackout_from);
            ev_end();
            opt.blackout_announced = 1;
        }
        if (opt.blackout_from >= 0 && t >= opt.blackout_until) {
            ev_begin("blackout_end");
            ev_end();
            opt.blackout_from = -1;
        }
        for (int i = 0; i < MAX_PEERS; i++) {
            struct peer *p = &peers[i];
            if (!p->used)
                continue;
            if (!p->established && gnutls_dtls_get_timeout(p->s) == 0)
                handshake_step(p); /* retransmits, or ends in a timeout */
            if (!p->used)
                continue;
            if (!p->established && t - p->started > opt.hs_timeout_ms + 5000) {
                ev_closed(p, "handshake abandoned");
                peer_free(p, 0);
            } else if (p->established && opt.idle_ms && t - p->last > opt.idle_ms) {
                ev_closed(p, "idle");
                peer_free(p, 0);
            }
        }
    }
}

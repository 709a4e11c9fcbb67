/* monitor._matchcore: the per-entry half of monitor.match, in C (issue #3).
 * (The story index's C core is monitor/_storycore.c.)
 *
 * monitor/match.py compiles watchlists (parsing, validation, the choice of
 * trigger patterns) and hands this module flat tables; Core.match(entry) then
 * does, for one entry, what match.py's pure-Python path does:
 *
 *   1. The hay: " title | summary ", lower-cased ASCII words joined by single
 *      spaces (text.token_string). ASCII, and text whose every character the
 *      fold table (text.ascii_folds) knows, is tokenised here; any other text
 *      goes through the Python token_string and is matched as UTF-8 bytes
 *      (every comparison is of whole patterns at word starts, so bytes and
 *      code points give the same answers and the same order).
 *   2. Every word is looked up once in the word table of the traced patterns
 *      (the triggers), keyed by a pattern's first word, or a prefix's first
 *      PREFIX_BYTES bytes; a bit filter small enough for the L1 cache skips
 *      the table for most words. Each hit is recorded with its first and last
 *      position. link: patterns are substrings of the link, found by walking
 *      a double-array trie from every position of the link's text.
 *   3. Trigger hits -> candidate watchlists, in compile order.
 *   4. Each candidate's program (postfix: TERM, NEAR, NOT, AND n, OR n) is
 *      evaluated; a term that is not traced is compared at the words whose
 *      key is its first word's, or searched for (memmem).
 *   5. A match's terms are its positive terms in order of first occurrence
 *      (query order on ties), each text once; the Match is built here.
 *
 * The Python path stays as the fallback and as the second implementation the
 * tests hold this one to (tests/test_match.py runs both against a reference
 * evaluator). Scratch memory lives in the Core; a call that finds it in use
 * (only possible if a finaliser re-enters from another thread) gets its own.
 * Buffers that 8-byte loads read (the hay, the source copy, the patterns) are
 * padded so a load past a word's end stays inside them.
 */

#define PY_SSIZE_T_CLEAN
/* The fold table (text.ascii_folds): FOLD_SIZE bytes per code point below
 * FOLD_LIMIT, a length (<= FOLD_MAX, else: not foldable) and the bytes. */
#define FOLD_LIMIT 0x2070
#define FOLD_SIZE 9
#define FOLD_MAX 8
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

enum { OP_TERM = 0, OP_NEAR = 1, OP_NOT = 2, OP_AND = 3, OP_OR = 4 };
enum { F_TEXT = 0, F_TITLE = 1, F_SUMMARY = 2, F_SOURCE = 3, F_LINK = 4 };
enum { CH_TEXT = 0, CH_SOURCE = 1, CH_LINK = 2, CHANNELS = 3 };
enum { NEAR_TITLE = 1, NEAR_SUMMARY = 2, NEAR_SOURCE = 4 };
enum { KIND_WORD = 0, KIND_PREFIX = 1, KIND_LINK = 2 };

/* A trie node of the double array: its child on byte b is slot base + cls[b],
 * if that slot's check is this node. */
typedef struct {
    int32_t base;
    int32_t check; /* the parent's slot; -1 for a free slot and the root */
    int32_t out;   /* the pattern that ends here, or -1 */
} Slot;

typedef struct {
    int32_t left, left_words, right, right_words, distance, fields;
} NearSpec;

typedef struct {
    int32_t field, pattern, text;
} Shown;

/* What evaluating a candidate reads of a pattern, together: one cache line
 * where five arrays would be five. */
typedef struct {
    const char *bytes;
    int32_t len;
    uint32_t key;   /* KIND_WORD: its first word's */
    uint8_t kind;
    uint8_t traced;
} PatHot;

/* And of a watchlist. */
typedef struct {
    int32_t prog, prog_end;   /* its program: prog[prog:prog_end] */
    int32_t shown, shown_end; /* its terms to report: shown[shown:shown_end] */
    int32_t has_feeds;        /* a feeds: list to check */
} WlHot;

/* The word table. A pattern that starts with a whole word (" korea ",
 * " north korea ", " north kor") is found by looking that word up. A
 * single-word prefix (" sanction") is keyed by its first PREFIX_BYTES bytes
 * (all of it, when shorter): a word is looked up by its first b bytes for
 * each such length b. A bit filter of every key, small enough to stay in the
 * L1 cache, says which look-ups can find anything: for most words none. */
#define PREFIX_BYTES 6
#define FILTER_WORDS 4096 /* 256 Kbit, 32 KB */
/* two bits of one 64-bit word per key: one memory access, few false yeses */
#define FILTER_BIT(key) (1ull << ((key) >> 14 & 63) | 1ull << ((key) >> 8 & 63))
#define FILTER_WORD(key) ((key) >> 20)
typedef struct {
    uint32_t hash;
    uint32_t pool; /* offset of its patterns in words_pool; 0: an empty entry */
} WordEntry;

/* In words_pool, per entry: int32 count, then per pattern int32 id, int32
 * length and its bytes, zero-padded to a multiple of 8. */

typedef struct {
    uint32_t gen;          /* the entry (generation) this record is about */
    int32_t first, last;   /* where the pattern occurs first and last */
} Hit;

typedef struct {
    char *hay;
    Py_ssize_t hay_cap;
    int32_t *lefts, *rights, *starts;
    uint32_t *keys;            /* per start of the hay: its word's key */
    Py_ssize_t pos_cap;
    uint32_t gen;
    Hit *hit[CHANNELS];        /* per pattern: hit in this channel when .gen == gen */
    int32_t *hits[CHANNELS];   /* pattern ids hit, per channel */
    uint32_t *cand_stamp;      /* per watchlist */
    int32_t *cands;
    int32_t *order;            /* per match: text indexes, in order */
    Py_ssize_t *at;            /* per shown term: where it first occurs */
    int32_t *idx;              /* per shown term, sorted by at */
    char *stack;
} Scratch;

typedef struct {
    PyObject_HEAD
    /* trie */
    Slot *da;
    uint16_t cls[256]; /* byte -> class (1..), 0 for a byte no pattern has */
    int32_t n_cls;
    /* patterns */
    int32_t n_patterns;
    const char **pat;   /* into pat_pool: each zero-padded to a multiple of 8, so the
                         * 8-byte compares may read a little past its end */
    char *pat_pool;
    Py_ssize_t *pat_len;
    uint8_t *kind;    /* per pattern: KIND_WORD, KIND_PREFIX or KIND_LINK */
    uint8_t *traced;  /* per pattern: recorded by the walks (a trigger, a link: text);
                       * any other is searched for, in candidates only */
    uint32_t *first_key; /* per KIND_WORD pattern: its first word's key */
    PatHot *hot;         /* per pattern */
    WlHot *wl;           /* per watchlist */
    WordEntry *words;
    uint32_t words_mask; /* slots - 1, a power of two minus one */
    uint8_t *words_pool;
    uint8_t prefix_lengths; /* bit b: some prefix is keyed by b bytes */
    int n_prefix_lengths;
    Py_ssize_t prefix_length[PREFIX_BYTES]; /* those b, ascending */
    uint64_t *filter;       /* bit key >> 16 set for every prefix key */
    /* triggers, CSR per channel: pattern -> watchlists */
    int32_t *trig_off[CHANNELS];
    int32_t *trig_wl[CHANNELS];
    /* watchlists */
    int32_t n_wl;
    int32_t *prog_off; /* n_wl + 1 */
    int32_t *prog;
    int32_t *shown_off; /* n_wl + 1 */
    Shown *shown;
    int32_t max_stack, max_shown;
    NearSpec *nears;
    int32_t n_nears;
    /* Python objects */
    PyObject *names;     /* tuple of str */
    PyObject *texts;     /* tuple of tuple of str, per watchlist */
    PyObject *feeds;     /* tuple of frozenset | None */
    PyObject *tokenize;  /* text.token_string */
    PyObject *link_text; /* match._link_text, or None when no watchlist uses link: */
    PyObject *make;      /* Match builder: tuple (type, d1, d2, d3) or a callable */
    PyObject *feed_cache; /* dict: feed name -> bytes " tokens " */
    uint8_t *fold;       /* the fold table, a copy */
    int has_source;
    Scratch scratch;
    int busy;
} Core;

static PyObject *str_title, *str_summary, *str_feed, *str_link;

/* ------------------------------------------------------------------ scratch */

static void scratch_free(Scratch *s) {
    PyMem_Free(s->hay);
    PyMem_Free(s->lefts);
    PyMem_Free(s->rights);
    PyMem_Free(s->starts);
    PyMem_Free(s->keys);
    for (int c = 0; c < CHANNELS; c++) {
        PyMem_Free(s->hit[c]);
        PyMem_Free(s->hits[c]);
    }
    PyMem_Free(s->cand_stamp);
    PyMem_Free(s->cands);
    PyMem_Free(s->order);
    PyMem_Free(s->at);
    PyMem_Free(s->idx);
    PyMem_Free(s->stack);
    memset(s, 0, sizeof(*s));
}

static int scratch_init(Scratch *s, const Core *core) {
    memset(s, 0, sizeof(*s));
    size_t np = (size_t)core->n_patterns + 1, nw = (size_t)core->n_wl + 1;
    for (int c = 0; c < CHANNELS; c++) {
        s->hit[c] = PyMem_Calloc(np, sizeof(Hit));
        s->hits[c] = PyMem_Malloc(np * sizeof(int32_t));
        if (!s->hit[c] || !s->hits[c]) goto fail;
    }
    s->cand_stamp = PyMem_Calloc(nw, sizeof(uint32_t));
    s->cands = PyMem_Malloc(nw * sizeof(int32_t));
    s->order = PyMem_Malloc(((size_t)core->max_shown + 1) * sizeof(int32_t));
    s->at = PyMem_Malloc(((size_t)core->max_shown + 1) * sizeof(Py_ssize_t));
    s->idx = PyMem_Malloc(((size_t)core->max_shown + 1) * sizeof(int32_t));
    s->stack = PyMem_Malloc((size_t)core->max_stack + 1);
    if (!s->cand_stamp || !s->cands || !s->order || !s->at || !s->idx || !s->stack) goto fail;
    s->gen = 0;
    return 0;
fail:
    scratch_free(s);
    PyErr_NoMemory();
    return -1;
}

/* A new generation: every stamp written before reads as "not this entry". */
static void scratch_next(Scratch *s, const Core *core) {
    if (++s->gen == 0) {
        for (int c = 0; c < CHANNELS; c++)
            memset(s->hit[c], 0, ((size_t)core->n_patterns + 1) * sizeof(Hit));
        memset(s->cand_stamp, 0, ((size_t)core->n_wl + 1) * sizeof(uint32_t));
        s->gen = 1;
    }
}

static int scratch_reserve(Scratch *s, Py_ssize_t hay, Py_ssize_t positions) {
    if (hay > s->hay_cap) {
        Py_ssize_t cap = hay < 1024 ? 1024 : hay * 2;
        char *p = PyMem_Realloc(s->hay, (size_t)cap);
        if (!p) { PyErr_NoMemory(); return -1; }
        s->hay = p;
        s->hay_cap = cap;
    }
    if (positions > s->pos_cap) {
        Py_ssize_t cap = positions < 256 ? 256 : positions * 2;
        int32_t *l = PyMem_Realloc(s->lefts, (size_t)cap * sizeof(int32_t));
        if (!l) { PyErr_NoMemory(); return -1; }
        s->lefts = l;
        int32_t *r = PyMem_Realloc(s->rights, (size_t)cap * sizeof(int32_t));
        if (!r) { PyErr_NoMemory(); return -1; }
        s->rights = r;
        int32_t *st = PyMem_Realloc(s->starts, (size_t)cap * sizeof(int32_t));
        if (!st) { PyErr_NoMemory(); return -1; }
        s->starts = st;
        uint32_t *k = PyMem_Realloc(s->keys, (size_t)cap * sizeof(uint32_t));
        if (!k) { PyErr_NoMemory(); return -1; }
        s->keys = k;
        s->pos_cap = cap;
    }
    return 0;
}

/* ------------------------------------------------------------------ trie */

static inline int32_t trie_child(const Core *c, int32_t node, uint8_t b) {
    int32_t cl = c->cls[b];
    if (!cl) return -1;
    int32_t next = c->da[node].base + cl;
    return c->da[next].check == node ? next : -1;
}

typedef struct {
    int32_t first, next, out; /* first child, next sibling */
    uint16_t cl;
} BuildNode;

/* Builds the double array of the link: patterns. Nodes are placed breadth-first, so
 * the shallow ones every walk visits sit together. */
static int trie_build(Core *c) {
    memset(c->cls, 0, sizeof(c->cls));
    c->n_cls = 0;
    for (int32_t p = 0; p < c->n_patterns; p++)
        for (Py_ssize_t i = 0; i < c->pat_len[p] && c->kind[p] == KIND_LINK; i++) {
            uint8_t byte = (uint8_t)c->pat[p][i];
            if (!c->cls[byte]) c->cls[byte] = (uint16_t)++c->n_cls;
        }
    /* 1. A plain trie: children as linked lists. */
    Py_ssize_t cap = 64, n = 1;
    BuildNode *b = PyMem_Malloc((size_t)cap * sizeof(BuildNode));
    if (!b) { PyErr_NoMemory(); return -1; }
    b[0] = (BuildNode){-1, -1, -1, 0};
    for (int32_t p = 0; p < c->n_patterns; p++) {
        if (c->kind[p] != KIND_LINK) continue;
        int32_t node = 0;
        for (Py_ssize_t i = 0; i < c->pat_len[p]; i++) {
            uint16_t cl = c->cls[(uint8_t)c->pat[p][i]];
            int32_t child = b[node].first;
            while (child >= 0 && b[child].cl != cl) child = b[child].next;
            if (child < 0) {
                if (n >= INT32_MAX / 2) { PyMem_Free(b); PyErr_SetString(PyExc_OverflowError, "too many patterns"); return -1; }
                if (n == cap) {
                    cap *= 2;
                    BuildNode *grown = PyMem_Realloc(b, (size_t)cap * sizeof(BuildNode));
                    if (!grown) { PyMem_Free(b); PyErr_NoMemory(); return -1; }
                    b = grown;
                }
                child = (int32_t)n++;
                b[child] = (BuildNode){-1, b[node].first, -1, cl};
                b[node].first = child;
            }
            node = child;
        }
        b[node].out = p;
    }
    /* 2. Place it: each node's children go where base + class is free. The
     * first fit is searched over free slots only (free_after, a union-find
     * "next free slot"), and a node that does not fit within a few thousand
     * of them goes past the last slot used: placing 10,000 watchlists stays
     * well under a second, with few slots left empty. */
    Py_ssize_t size = n + c->n_cls + 1024;
    Slot *da = PyMem_Malloc((size_t)size * sizeof(Slot));
    int32_t *free_after = PyMem_Malloc((size_t)size * sizeof(int32_t));
    int32_t *queue = PyMem_Malloc((size_t)n * sizeof(int32_t)); /* old ids */
    int32_t *slot_of = PyMem_Malloc((size_t)n * sizeof(int32_t));
    int32_t *labels = PyMem_Malloc(((size_t)c->n_cls + 1) * sizeof(int32_t));
    if (!da || !free_after || !queue || !slot_of || !labels) goto nomem;
    for (Py_ssize_t i = 0; i < size; i++) { da[i] = (Slot){0, -1, -1}; free_after[i] = (int32_t)i; }
    Py_ssize_t head = 0, tail = 0, top = 0;
    queue[tail++] = 0;
    slot_of[0] = 0;
    da[0].check = -2; /* the root's slot is taken; -2 is nobody's parent */
    free_after[0] = 1;
    while (head < tail) {
        int32_t old = queue[head++], slot = slot_of[old];
        da[slot].out = b[old].out;
        int32_t k = 0, lowest = INT32_MAX, highest = 0;
        for (int32_t ch = b[old].first; ch >= 0; ch = b[ch].next) {
            labels[k++] = b[ch].cl;
            if (b[ch].cl < lowest) lowest = b[ch].cl;
            if (b[ch].cl > highest) highest = b[ch].cl;
        }
        if (!k) continue;
        Py_ssize_t at = lowest + 1, base, tries = 0;
        for (;;) {
            if (at + (highest - lowest) + c->n_cls + 2 >= size) {
                Py_ssize_t grown_size = size * 2;
                Slot *grown = PyMem_Realloc(da, (size_t)grown_size * sizeof(Slot));
                if (!grown) goto nomem;
                da = grown;
                int32_t *grown_free = PyMem_Realloc(free_after, (size_t)grown_size * sizeof(int32_t));
                if (!grown_free) goto nomem;
                free_after = grown_free;
                for (Py_ssize_t i = size; i < grown_size; i++) {
                    da[i] = (Slot){0, -1, -1};
                    free_after[i] = (int32_t)i;
                }
                size = grown_size;
            }
            /* the first free slot from at on, compressing the path */
            Py_ssize_t root = at;
            while (free_after[root] != root) root = free_after[root];
            while (free_after[at] != at) { Py_ssize_t next = free_after[at]; free_after[at] = (int32_t)root; at = next; }
            base = at - lowest;
            int32_t j = 0;
            while (j < k && da[base + labels[j]].check == -1) j++;
            if (j == k) break;
            at = ++tries > 4096 && at <= top ? top + 1 : at + 1;
        }
        if (base > INT32_MAX - 2 * c->n_cls) goto nomem;
        da[slot].base = (int32_t)base;
        for (int32_t ch = b[old].first; ch >= 0; ch = b[ch].next) {
            int32_t taken = (int32_t)base + b[ch].cl;
            da[taken].check = slot;
            free_after[taken] = taken + 1;
            slot_of[ch] = taken;
            queue[tail++] = ch;
            if (taken > top) top = taken;
        }
    }
    da[0].check = -1;
    PyMem_Free(b); PyMem_Free(free_after); PyMem_Free(queue); PyMem_Free(slot_of); PyMem_Free(labels);
    c->da = da;
    /* size >= every base + n_cls + 1, so a look-up never leaves da */
    return 0;
nomem:
    PyMem_Free(b); PyMem_Free(da); PyMem_Free(free_after); PyMem_Free(queue); PyMem_Free(slot_of); PyMem_Free(labels);
    PyErr_NoMemory();
    return -1;
}

static inline void record(Hit *hit, int32_t *hits, int32_t *nhits, uint32_t gen, int32_t p,
                          int32_t at) {
    Hit *h = &hit[p];
    if (h->gen != gen) {
        h->gen = gen;
        h->first = at;
        hits[(*nhits)++] = p;
    }
    h->last = at;
}

/* low_bytes[n]: the first n bytes of a loaded word (n >= 8: all of them). */
static uint64_t low_bytes[9];

static void low_bytes_init(void) {
    for (int n = 0; n <= 8; n++) {
        uint64_t v = 0;
        memset(&v, 0xff, (size_t)n);
        low_bytes[n] = v;
    }
}

/* The bytes word[0:n) (0 < n <= 8) as a number. padded: the eight bytes from
 * word on may be read whatever n is; the number is the same either way. */
static inline uint64_t load(const uint8_t *word, Py_ssize_t n, int padded) {
    uint64_t v = 0;
    if (!padded) {
        memcpy(&v, word, (size_t)n);
        return v;
    }
    memcpy(&v, word, 8);
    return v & low_bytes[n < 8 ? n : 8];
}

static inline uint32_t mix(uint64_t h) {
    h *= 0xff51afd7ed558ccdull;
    return (uint32_t)(h >> 32) ^ (uint32_t)h;
}

/* The key of a whole word. */
static inline uint32_t word_key(const uint8_t *word, Py_ssize_t len, int padded) {
    uint64_t h = (uint64_t)len * 0x9E3779B97F4A7C15ull;
    for (; len > 8; word += 8, len -= 8) h = (h ^ load(word, 8, padded)) * 0xc4ceb9fe1a85ec53ull;
    return mix(h ^ load(word, len, padded));
}

/* The key of a prefix of n <= PREFIX_BYTES bytes; unlike any word's key as a rule. */
static inline uint32_t prefix_key(const uint8_t *word, Py_ssize_t n, int padded) {
    return mix((load(word, n, padded) ^ (uint64_t)n << 59) + 0x2545F4914F6CDD1Dull);
}

static inline uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Whether a[0:n) == b[0:n), eight bytes at a time: both may be read up to
 * the next multiple of 8 (the hay and the pool are padded). */
static inline int same(const uint8_t *a, const uint8_t *b, Py_ssize_t n) {
    for (;; a += 8, b += 8, n -= 8) {
        uint64_t x, y;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        uint64_t diff = x ^ y;
        if (n < 8) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            return n <= 0 || !(diff & (~0ull << (64 - 8 * n)));
#else
            return n <= 0 || !(diff & ((1ull << (8 * n)) - 1));
#endif
        }
        if (diff) return 0;
    }
}

/* Records, for the table entry keyed h, each of its patterns that occurs at
 * text[at:]. */
static inline void look_up(const Core *c, uint32_t h, const uint8_t *t, Py_ssize_t len,
                           int32_t at, Hit *hit, int32_t *hits, int32_t *nhits, uint32_t gen) {
    for (uint32_t i = h & c->words_mask;; i = (i + 1) & c->words_mask) {
        const WordEntry *e = &c->words[i];
        if (!e->pool) return;
        if (e->hash != h) continue;
        const uint8_t *q = c->words_pool + e->pool;
        int32_t n = (int32_t)rd32(q);
        q += 4;
        for (int32_t j = 0; j < n; j++) {
            int32_t p = (int32_t)rd32(q), plen = (int32_t)rd32(q + 4);
            if (at + plen <= len && same(t + at, q + 8, plen)) record(hit, hits, nhits, gen, p, at);
            q += 8 + ((plen + 7) & ~7);
        }
        return;
    }
}

/* Records in channel ch every text pattern that occurs in text starting at one
 * of the spaces at starts[0:n] (all the spaces of text but a last one), by
 * looking the word after it up, whole and by its first bytes. text must be
 * readable 8 bytes past len. */
static void walk_words(const Core *c, Scratch *s, int ch, const char *text, Py_ssize_t len,
                       const int32_t *starts, Py_ssize_t n, int32_t *nhits, uint32_t *keys) {
    uint32_t gen = s->gen;
    Hit *hit = s->hit[ch];
    int32_t *hits = s->hits[ch];
    const uint8_t *t = (const uint8_t *)text;
    const uint64_t *filter = c->filter;
    int n_lengths = c->n_prefix_lengths;
    for (Py_ssize_t k = 0; k < n; k++) {
        int32_t at = starts[k];
        Py_ssize_t end = k + 1 < n ? starts[k + 1] : len - 1; /* the word is t[at + 1:end] */
        Py_ssize_t wlen = end - at - 1;
        if (wlen <= 0) { if (keys) keys[k] = 0; continue; }
        const uint8_t *word = t + at + 1;
        /* word_key and prefix_key, on one load of the word's first 8 bytes */
        uint64_t raw;
        memcpy(&raw, word, 8);
        uint32_t key = wlen <= 8 ? mix((uint64_t)wlen * 0x9E3779B97F4A7C15ull ^ (raw & low_bytes[wlen]))
                                 : word_key(word, wlen, 1);
        if (keys) keys[k] = key;
        if (!c->words) continue;
        uint64_t bits = FILTER_BIT(key);
        if ((filter[FILTER_WORD(key)] & bits) == bits)
            look_up(c, key, t, len, at, hit, hits, nhits, gen);
        for (int i = 0; i < n_lengths; i++) {
            Py_ssize_t b = c->prefix_length[i];
            key = mix(((raw & low_bytes[b]) ^ (uint64_t)b << 59) + 0x2545F4914F6CDD1Dull);
            /* no branch on the word's length: the filter's answer is rarely yes */
            bits = FILTER_BIT(key);
            if ((filter[FILTER_WORD(key)] & bits & -(uint64_t)(wlen >= b)) == bits)
                look_up(c, key, t, len, at, hit, hits, nhits, gen);
        }
    }
}

/* The table key of text pattern p: its first word's, or its prefix's. */
static uint32_t pattern_key(const Core *c, int32_t p) {
    const uint8_t *word = (const uint8_t *)c->pat[p] + 1;
    Py_ssize_t rest = c->pat_len[p] - 1;
    if (c->kind[p] == KIND_WORD)
        return word_key(word, (const uint8_t *)memchr(word, ' ', (size_t)rest) - word, 0);
    return prefix_key(word, rest < PREFIX_BYTES ? rest : PREFIX_BYTES, 0);
}

/* The word table of every text pattern (KIND_WORD and KIND_PREFIX). */
static int words_build(Core *c) {
    int32_t n = 0;
    size_t pool = 4;
    for (int32_t p = 0; p < c->n_patterns; p++) {
        if (c->kind[p] == KIND_LINK || !c->traced[p]) continue;
        n++;
        pool += 4 + 8 + (((size_t)c->pat_len[p] + 7) & ~(size_t)7);
        if (c->kind[p] == KIND_PREFIX) {
            Py_ssize_t rest = c->pat_len[p] - 1;
            c->prefix_lengths |= (uint8_t)(1u << (rest < PREFIX_BYTES ? rest : PREFIX_BYTES));
        }
    }
    for (int b = 1; b <= PREFIX_BYTES; b++)
        if (c->prefix_lengths >> b & 1) c->prefix_length[c->n_prefix_lengths++] = b;
    if (!n) return 0;
    uint32_t slots = 16;
    while (slots < 2u * (uint32_t)n) slots *= 2;
    if (pool + (size_t)slots * 4 > UINT32_MAX) { PyErr_SetString(PyExc_OverflowError, "too many patterns"); return -1; }
    pool += (size_t)slots * 4; /* a count per entry at most */
    int32_t *slot_of = PyMem_Malloc((size_t)c->n_patterns * sizeof(int32_t));
    uint32_t *size = PyMem_Calloc(slots, sizeof(uint32_t));   /* bytes of its patterns */
    uint32_t *cursor = PyMem_Calloc(slots, sizeof(uint32_t)); /* where its next one goes */
    c->words = PyMem_Calloc(slots, sizeof(WordEntry));
    c->words_pool = PyMem_Calloc(pool + 8, 1);
    c->filter = PyMem_Calloc(FILTER_WORDS, sizeof(uint64_t));
    if (!slot_of || !size || !cursor || !c->words || !c->words_pool || !c->filter) {
        PyMem_Free(slot_of); PyMem_Free(size); PyMem_Free(cursor);
        PyErr_NoMemory();
        return -1;
    }
    c->words_mask = slots - 1;
    /* 1. a slot per distinct key, and the room its patterns take */
    for (int32_t p = 0; p < c->n_patterns; p++) {
        if (c->kind[p] == KIND_LINK || !c->traced[p]) continue;
        uint32_t h = pattern_key(c, p);
        c->filter[FILTER_WORD(h)] |= FILTER_BIT(h);
        uint32_t i = h & c->words_mask;
        while (size[i] && c->words[i].hash != h) i = (i + 1) & c->words_mask;
        c->words[i].hash = h;
        size[i] += 8 + (((uint32_t)c->pat_len[p] + 7) & ~7u);
        slot_of[p] = (int32_t)i;
    }
    /* 2. entries in the pool in order of their first pattern; patterns in order */
    uint32_t at = 4; /* 0 marks an empty slot */
    for (int32_t p = 0; p < c->n_patterns; p++) {
        if (c->kind[p] == KIND_LINK || !c->traced[p]) continue;
        uint32_t i = (uint32_t)slot_of[p];
        WordEntry *e = &c->words[i];
        if (!e->pool) {
            e->pool = at;
            cursor[i] = at + 4;
            at += 4 + size[i];
        }
        uint8_t *q = c->words_pool + cursor[i];
        int32_t id = p, plen = (int32_t)c->pat_len[p], held;
        memcpy(q, &id, 4);
        memcpy(q + 4, &plen, 4);
        memcpy(q + 8, c->pat[p], (size_t)plen);
        cursor[i] += 8 + (((uint32_t)plen + 7) & ~7u);
        memcpy(&held, c->words_pool + e->pool, 4);
        held++;
        memcpy(c->words_pool + e->pool, &held, 4);
    }
    PyMem_Free(slot_of);
    PyMem_Free(size);
    PyMem_Free(cursor);
    return 0;
}

/* The same from every position: link: patterns are substrings. */
static void walk_all(const Core *c, Scratch *s, int ch, const char *text, Py_ssize_t len,
                     int32_t *nhits) {
    uint32_t gen = s->gen;
    Hit *hit = s->hit[ch];
    int32_t *hits = s->hits[ch];
    const uint8_t *t = (const uint8_t *)text;
    for (Py_ssize_t i = 0; i < len; i++) {
        int32_t node = 0;
        for (Py_ssize_t j = i; j < len; j++) {
            node = trie_child(c, node, t[j]);
            if (node < 0) break;
            int32_t out = c->da[node].out;
            if (out >= 0) record(hit, hits, nhits, gen, out, (int32_t)i);
        }
    }
}

/* Positions of the spaces in text[0:len), into starts; returns how many. */
static Py_ssize_t spaces(const char *text, Py_ssize_t len, int32_t *starts) {
    Py_ssize_t n = 0;
    const char *p = text, *end = text + len;
    while ((p = memchr(p, ' ', (size_t)(end - p))) != NULL) starts[n++] = (int32_t)(p++ - text);
    return n;
}

/* ------------------------------------------------------------------ text */

static const char *find(const char *hay, Py_ssize_t start, Py_ssize_t end, const char *pat,
                        Py_ssize_t plen) {
    if (start < 0) start = 0;
    if (end - start < plen) return NULL;
    return memmem(hay + start, (size_t)(end - start), pat, (size_t)plen);
}

/* Lower-cases ASCII letters and digits, turns everything else into a single
 * space, and trims: text.token_string for ASCII. Returns the bytes written. */
static char token_table[256];

static void token_table_init(void) {
    for (int i = 0; i < 256; i++) {
        if (i >= 'A' && i <= 'Z') token_table[i] = (char)(i - 'A' + 'a');
        else if ((i >= 'a' && i <= 'z') || (i >= '0' && i <= '9')) token_table[i] = (char)i;
        else token_table[i] = ' ';
    }
}

/* Writes the tokens of src at hay + w and the positions of the spaces it
 * writes at starts + *n; returns the new w. No branch on the text: a space
 * after a space is written and then overwritten. */
typedef struct {
    char *hay;
    int32_t *starts;
    Py_ssize_t w, k, from;
    int prev; /* the last byte kept was a space (at first: drops leading spaces) */
} Squeeze;

static inline Squeeze squeeze_start(char *hay, Py_ssize_t w, int32_t *starts, Py_ssize_t n) {
    return (Squeeze){hay, starts, w, n, w, 1};
}

/* Appends one token byte (a letter, a digit or a space), a space only after
 * something that is not one. */
static inline void squeeze_put(Squeeze *q, char ch) {
    int space = ch == ' ';
    int keep = !(space & q->prev);
    q->hay[q->w] = ch;
    q->starts[q->k] = (int32_t)q->w;
    q->k += space & keep;
    q->w += keep;
    q->prev = space;
}

/* Drops a trailing space; returns the new w, and the new count of starts in *n. */
static inline Py_ssize_t squeeze_end(Squeeze *q, Py_ssize_t *n) {
    if (q->w > q->from && q->prev) { q->w--; q->k--; }
    *n = q->k;
    return q->w;
}

static Py_ssize_t ascii_tokens(const void *data, Py_ssize_t len, char *hay, Py_ssize_t w,
                               int32_t *starts, Py_ssize_t *n) {
    const char *src = data;
    Squeeze q = squeeze_start(hay, w, starts, *n);
    for (Py_ssize_t i = 0; i < len; i++) squeeze_put(&q, token_table[(uint8_t)src[i]]);
    return squeeze_end(&q, n);
}

/* The UTF-8 of token_string(text) for non-ASCII text, as a new bytes object. */
static PyObject *tokens_utf8(Core *c, PyObject *text) {
    PyObject *tokens = PyObject_CallOneArg(c->tokenize, text);
    if (!tokens) return NULL;
    if (!PyUnicode_Check(tokens)) {
        Py_DECREF(tokens);
        PyErr_SetString(PyExc_TypeError, "token_string must return str");
        return NULL;
    }
    PyObject *bytes = PyUnicode_AsEncodedString(tokens, "utf-8", "surrogatepass");
    Py_DECREF(tokens);
    return bytes;
}

enum { TEXT_ASCII, TEXT_FOLD, TEXT_TOKENS };

typedef struct {
    PyObject *owned; /* a bytes object to release, or NULL */
    const void *data;
    Py_ssize_t len;  /* characters of data */
    Py_ssize_t room; /* bytes its tokens may take */
    int mode;        /* TEXT_ASCII and TEXT_FOLD: still to be tokenised; TEXT_TOKENS: UTF-8 tokens */
    int kind;        /* TEXT_FOLD: PyUnicode_KIND */
} Text;

/* Sorts a text into ASCII (tokenised here), text whose every character the
 * fold table knows (tokenised here too), or anything else (token_string). */
static int text_of(Core *c, PyObject *obj, Text *t) {
    t->owned = NULL;
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "entry text must be str, not %.100s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    t->data = PyUnicode_DATA(obj);
    t->len = t->room = PyUnicode_GET_LENGTH(obj);
    if (PyUnicode_IS_ASCII(obj)) {
        t->mode = TEXT_ASCII;
        return 0;
    }
    t->kind = PyUnicode_KIND(obj);
    if (t->kind != PyUnicode_4BYTE_KIND) {
        Py_ssize_t room = 0, i = 0;
        for (; i < t->len; i++) {
            Py_UCS4 ch = PyUnicode_READ(t->kind, t->data, i);
            if (ch < 128) room++;
            else if (ch < FOLD_LIMIT && c->fold[ch * FOLD_SIZE] <= FOLD_MAX) room += c->fold[ch * FOLD_SIZE];
            else break;
        }
        if (i == t->len) {
            t->mode = TEXT_FOLD;
            t->room = room;
            return 0;
        }
    }
    t->owned = tokens_utf8(c, obj);
    if (!t->owned) return -1;
    t->data = PyBytes_AS_STRING(t->owned);
    t->len = t->room = PyBytes_GET_SIZE(t->owned);
    t->mode = TEXT_TOKENS;
    return 0;
}

/* ascii_tokens for text with characters of the fold table: each folds to
 * letters, digits and separators, as token_string would fold it. */
static Py_ssize_t fold_tokens(const Core *c, const Text *t, char *hay, Py_ssize_t w,
                              int32_t *starts, Py_ssize_t *n) {
    Squeeze q = squeeze_start(hay, w, starts, *n);
    for (Py_ssize_t i = 0; i < t->len; i++) {
        Py_UCS4 ch = PyUnicode_READ(t->kind, t->data, i);
        const char *out;
        int m;
        if (ch < 128) {
            out = &token_table[ch];
            m = 1;
        } else {
            const uint8_t *entry = c->fold + (size_t)ch * FOLD_SIZE;
            out = (const char *)entry + 1;
            m = entry[0];
        }
        for (int j = 0; j < m; j++) squeeze_put(&q, out[j]);
    }
    return squeeze_end(&q, n);
}

/* The hay's tokens for one text, written at hay + w; returns the new w. */
static Py_ssize_t put_tokens(const Core *c, const Text *t, char *hay, Py_ssize_t w,
                             int32_t *starts, Py_ssize_t *n) {
    if (t->mode == TEXT_ASCII) return ascii_tokens(t->data, t->len, hay, w, starts, n);
    if (t->mode == TEXT_FOLD) return fold_tokens(c, t, hay, w, starts, n);
    memcpy(hay + w, t->data, (size_t)t->len);
    return w + t->len;
}

/* " tokens " of a feed name, cached per name (feeds are few). */
static PyObject *feed_hay(Core *c, PyObject *feed) {
    PyObject *hay = PyDict_GetItemWithError(c->feed_cache, feed);
    if (hay) return Py_NewRef(hay);
    if (PyErr_Occurred()) return NULL;
    PyObject *tokens = PyObject_CallOneArg(c->tokenize, feed);
    if (!tokens) return NULL;
    PyObject *framed = PyUnicode_FromFormat(" %U ", tokens);
    Py_DECREF(tokens);
    if (!framed) return NULL;
    hay = PyUnicode_AsEncodedString(framed, "utf-8", "surrogatepass");
    Py_DECREF(framed);
    if (!hay) return NULL;
    if (PyDict_GET_SIZE(c->feed_cache) >= 100000) PyDict_Clear(c->feed_cache);
    if (PyDict_SetItem(c->feed_cache, feed, hay) < 0) { Py_DECREF(hay); return NULL; }
    return hay;
}

/* ------------------------------------------------------------------ evaluation */

typedef struct {
    const char *hay;
    Py_ssize_t len, cut; /* hay[0:cut) is " title ", hay[cut] the '|' */
    const char *source;
    Py_ssize_t source_len;
    const char *link;
    Py_ssize_t link_len;
    const int32_t *starts;  /* the hay's spaces but the last, */
    const uint32_t *keys;   /* the key of the word after each, */
    Py_ssize_t n_starts;    /* how many, */
    Py_ssize_t first_summary; /* and the first after the '|' */
} View;

/* Whether pattern p occurs in the field. Every pattern is in the trie, so
 * this reads the walk's records: title is [0, cut), summary from cut on. */
/* Where pattern p first occurs in the field, on one axis: hay, then the feed
 * name, then the link (match._present's order); -1 when absent. A search. */
/* Whether pattern h occurs at the hay's k-th start. A text pattern starts
 * at a space, so these are the only places to look; a KIND_WORD one only at
 * a word whose key (left by the walk) is its first word's. */
static inline int at_start(const View *v, const PatHot *h, Py_ssize_t k) {
    if (h->kind == KIND_WORD && v->keys[k] != h->key) return 0;
    int32_t start = v->starts[k];
    return start + h->len <= v->len
           && same((const uint8_t *)v->hay + start, (const uint8_t *)h->bytes, h->len);
}

/* The starts to look at for a field of the hay: [*from, *to). */
static inline void start_range(const View *v, int32_t field, Py_ssize_t *from, Py_ssize_t *to) {
    *from = field == F_SUMMARY ? v->first_summary : 0;
    *to = field == F_TITLE ? v->first_summary : v->n_starts;
}

static Py_ssize_t search(const Core *c, const View *v, int32_t field, int32_t p) {
    const PatHot *h = &c->hot[p];
    const char *pat = h->bytes, *at;
    Py_ssize_t plen = h->len;
    if (field <= F_SUMMARY) {
        Py_ssize_t k, end;
        start_range(v, field, &k, &end);
        for (; k < end; k++)
            if (at_start(v, h, k)) return v->starts[k];
        return -1;
    }
    switch (field) {
    case F_TEXT: at = find(v->hay, 0, v->len, pat, plen); return at ? at - v->hay : -1;
    case F_TITLE: at = find(v->hay, 0, v->cut, pat, plen); return at ? at - v->hay : -1;
    case F_SUMMARY: at = find(v->hay, v->cut, v->len, pat, plen); return at ? at - v->hay : -1;
    case F_SOURCE:
        at = find(v->source, 0, v->source_len, pat, plen);
        return at ? v->len + (at - v->source) : -1;
    default:
        at = find(v->link, 0, v->link_len, pat, plen);
        return at ? v->len + v->source_len + (at - v->link) : -1;
    }
}

/* Whether pattern p occurs in the field: from the walks' records when they
 * trace it (title is [0, cut), summary from cut on), else by a search. */
static int present(const Core *c, const Scratch *s, const View *v, int32_t field, int32_t p) {
    if (!c->hot[p].traced) return search(c, v, field, p) >= 0;
    uint32_t gen = s->gen;
    switch (field) {
    case F_TEXT: return s->hit[CH_TEXT][p].gen == gen;
    case F_TITLE: return s->hit[CH_TEXT][p].gen == gen && s->hit[CH_TEXT][p].first < v->cut;
    case F_SUMMARY: return s->hit[CH_TEXT][p].gen == gen && s->hit[CH_TEXT][p].last > v->cut;
    case F_SOURCE: return s->hit[CH_SOURCE][p].gen == gen;
    default: return s->hit[CH_LINK][p].gen == gen;
    }
}

/* Word indexes (spaces before it, counted from start) of every occurrence of
 * pattern p within text[start:end). */
static Py_ssize_t positions(const Core *c, const char *text, Py_ssize_t start, Py_ssize_t end,
                            int32_t p, int32_t *out) {
    Py_ssize_t n = 0, counted_to = start, spaces = 0;
    const char *pat = c->hot[p].bytes;
    Py_ssize_t plen = c->hot[p].len;
    Py_ssize_t from = start;
    for (;;) {
        const char *at = find(text, from, end, pat, plen);
        if (!at) break;
        Py_ssize_t off = at - text;
        for (; counted_to < off; counted_to++) spaces += text[counted_to] == ' ';
        out[n++] = (int32_t)spaces;
        from = off + 1;
    }
    return n;
}

static int near(const Core *c, Scratch *s, const View *v, int32_t which) {
    const NearSpec *spec = &c->nears[which];
    int ch = spec->fields & NEAR_SOURCE ? CH_SOURCE : CH_TEXT;
    if ((c->hot[spec->left].traced && s->hit[ch][spec->left].gen != s->gen)
        || (c->hot[spec->right].traced && s->hit[ch][spec->right].gen != s->gen))
        return 0;
    for (int f = 0; f < 3; f++) {
        const char *text;
        Py_ssize_t start, end;
        if (f == 0) {
            if (!(spec->fields & NEAR_TITLE)) continue;
            text = v->hay; start = 0; end = v->cut;
        } else if (f == 1) {
            if (!(spec->fields & NEAR_SUMMARY)) continue;
            text = v->hay; start = v->cut + 1; end = v->len;
        } else {
            if (!(spec->fields & NEAR_SOURCE)) continue;
            text = v->source; start = 0; end = v->source_len;
        }
        Py_ssize_t nl, nr;
        if (f < 2) { /* word indexes in the title or the summary, from the starts */
            Py_ssize_t from, to;
            start_range(v, f == 0 ? F_TITLE : F_SUMMARY, &from, &to);
            const PatHot *left = &c->hot[spec->left], *right = &c->hot[spec->right];
            nl = nr = 0;
            for (Py_ssize_t k = from; k < to; k++)
                if (at_start(v, left, k)) s->lefts[nl++] = (int32_t)(k - from);
            if (!nl) continue;
            for (Py_ssize_t k = from; k < to; k++)
                if (at_start(v, right, k)) s->rights[nr++] = (int32_t)(k - from);
        } else {
            nl = positions(c, text, start, end, spec->left, s->lefts);
            if (!nl) continue;
            nr = positions(c, text, start, end, spec->right, s->rights);
        }
        for (Py_ssize_t i = 0; i < nl; i++) {
            int64_t l = s->lefts[i];
            for (Py_ssize_t j = 0; j < nr; j++) {
                int64_t r = s->rights[j];
                int64_t a = r - (l + spec->left_words), b = l - (r + spec->right_words);
                int64_t gap = a > b ? a : b; /* < 0: the two sides are one occurrence */
                if (gap >= 0 && gap <= spec->distance) return 1;
            }
        }
    }
    return 0;
}

static int evaluate(const Core *c, Scratch *s, const View *v, int32_t w) {
    const int32_t *op = c->prog + c->wl[w].prog, *end = c->prog + c->wl[w].prog_end;
    char *stack = s->stack;
    int32_t sp = 0;
    while (op < end) {
        switch (op[0]) {
        case OP_TERM: stack[sp++] = (char)present(c, s, v, op[1], op[2]); op += 3; break;
        case OP_NEAR: stack[sp++] = (char)near(c, s, v, op[1]); op += 2; break;
        case OP_NOT: stack[sp - 1] = !stack[sp - 1]; op += 1; break;
        case OP_AND: {
            int32_t n = op[1];
            char r = 1;
            for (int32_t i = sp - n; i < sp; i++) r &= stack[i];
            sp -= n;
            stack[sp++] = r;
            op += 2;
            break;
        }
        default: { /* OP_OR, checked at construction */
            int32_t n = op[1];
            char r = 0;
            for (int32_t i = sp - n; i < sp; i++) r |= stack[i];
            sp -= n;
            stack[sp++] = r;
            op += 2;
            break;
        }
        }
    }
    return stack[0];
}

/* Where a shown term first occurs, on one axis: hay, then the feed name, then
 * the link (match._present's order). -1 when absent. */
static Py_ssize_t first_at(const Core *c, const Scratch *s, const View *v, const Shown *t) {
    if (!c->hot[t->pattern].traced) return search(c, v, t->field, t->pattern);
    int ch = t->field == F_SOURCE ? CH_SOURCE : t->field == F_LINK ? CH_LINK : CH_TEXT;
    const Hit *h = &s->hit[ch][t->pattern];
    if (h->gen != s->gen) return -1;
    switch (t->field) {
    case F_TEXT: return h->first;
    case F_TITLE: return h->first < v->cut ? h->first : -1;
    case F_SUMMARY: {
        if (h->first > v->cut) return h->first;
        if (h->last < v->cut) return -1;
        return search(c, v, F_SUMMARY, t->pattern); /* in both: its first place in the summary */
    }
    case F_SOURCE: return v->len + h->first;
    default: return v->len + v->source_len + h->first;
    }
}

/* The watchlist's matched texts, in order, as indexes into its texts tuple. */
static Py_ssize_t order_terms(const Core *c, Scratch *s, const View *v, int32_t w) {
    const Shown *shown = c->shown + c->wl[w].shown;
    int32_t n = c->wl[w].shown_end - c->wl[w].shown;
    int32_t *order = s->order;
    if (n == 1) { /* the test held, so its one positive term is present */
        order[0] = shown[0].text;
        return 1;
    }
    Py_ssize_t *at = s->at;
    int32_t *idx = s->idx, found = 0;
    for (int32_t i = 0; i < n; i++) {
        Py_ssize_t a = first_at(c, s, v, &shown[i]);
        if (a < 0) continue;
        /* insertion sort, stable: equal positions keep query order */
        int32_t j = found++;
        while (j > 0 && at[j - 1] > a) { at[j] = at[j - 1]; idx[j] = idx[j - 1]; j--; }
        at[j] = a;
        idx[j] = i;
    }
    Py_ssize_t m = 0;
    for (int32_t i = 0; i < found; i++) {
        int32_t text = shown[idx[i]].text;
        int dup = 0;
        for (Py_ssize_t j = 0; j < m && !dup; j++) dup = order[j] == text;
        if (!dup) order[m++] = text;
    }
    return m;
}

static int cmp_int32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* ------------------------------------------------------------------ Core.match */

static PyObject *build_match(Core *c, PyObject *name, PyObject *entry, PyObject *terms) {
    if (PyTuple_Check(c->make)) {
        PyTypeObject *type = (PyTypeObject *)PyTuple_GET_ITEM(c->make, 0);
        PyObject *m = type->tp_alloc(type, 0);
        if (!m) return NULL;
        PyObject *values[3] = {name, entry, terms};
        for (int i = 0; i < 3; i++) {
            PyObject *d = PyTuple_GET_ITEM(c->make, i + 1);
            if (Py_TYPE(d)->tp_descr_set(d, m, values[i]) < 0) { Py_DECREF(m); return NULL; }
        }
        return m;
    }
    return PyObject_CallFunctionObjArgs(c->make, name, entry, terms, NULL);
}

/* Runs steps 1-5 for one entry; the texts are already in hand (Python calls done). */
static PyObject *match_entry(Core *c, Scratch *s, PyObject *entry, Text *title, Text *summary,
                             PyObject *feed, PyObject *source, PyObject *link) {
    Py_ssize_t len = 1 + title->room + 3 + summary->room + 1;
    Py_ssize_t source_len = source ? PyBytes_GET_SIZE(source) : 0;
    Py_ssize_t link_len = link ? PyBytes_GET_SIZE(link) : 0;
    Py_ssize_t most = len > source_len ? len : source_len;
    /* hay, then a copy of the source; 8 bytes after each for word_hash */
    if (scratch_reserve(s, len + 8 + source_len + 8, (most > link_len ? most : link_len) + 1) < 0)
        return NULL;
    char *hay = s->hay;
    int32_t *starts = s->starts;
    Py_ssize_t w = 0, n = 0;
    starts[n++] = (int32_t)w;
    hay[w++] = ' ';
    w = put_tokens(c, title, hay, w, starts, &n);
    Py_ssize_t cut = w + 1;
    starts[n++] = (int32_t)w;
    hay[w++] = ' '; hay[w++] = '|';
    starts[n++] = (int32_t)w;
    hay[w++] = ' ';
    w = put_tokens(c, summary, hay, w, starts, &n);
    hay[w++] = ' ';
    if (title->mode == TEXT_TOKENS || summary->mode == TEXT_TOKENS)
        n = spaces(hay, w - 1, starts); /* tokenised in Python */

    View v = {hay, w, cut, "", 0, "", 0, NULL, NULL, 0, 0};
    memset(hay + w, 0, 8);
    if (source) {
        char *copy = hay + w + 8;
        memcpy(copy, PyBytes_AS_STRING(source), (size_t)source_len);
        memset(copy + source_len, 0, 8);
        v.source = copy;
        v.source_len = source_len;
    }
    if (link) { v.link = PyBytes_AS_STRING(link); v.link_len = link_len; }

    scratch_next(s, c);
    int32_t nhits[CHANNELS] = {0, 0, 0};
    walk_words(c, s, CH_TEXT, hay, w, starts, n, &nhits[CH_TEXT], s->keys);
    v.starts = starts;
    v.keys = s->keys;
    v.n_starts = n;
    for (v.first_summary = 0; v.first_summary < n && starts[v.first_summary] < cut; v.first_summary++)
        ;
    if (source) {
        Py_ssize_t ns = spaces(v.source, v.source_len, s->lefts); /* lefts: free until NEAR */
        walk_words(c, s, CH_SOURCE, v.source, v.source_len, s->lefts, ns, &nhits[CH_SOURCE], NULL);
    }
    if (link) walk_all(c, s, CH_LINK, v.link, v.link_len, &nhits[CH_LINK]);

    int32_t ncand = 0;
    uint32_t gen = s->gen;
    for (int ch = 0; ch < CHANNELS; ch++) {
        const int32_t *off = c->trig_off[ch], *wl = c->trig_wl[ch];
        for (int32_t i = 0; i < nhits[ch]; i++) {
            int32_t p = s->hits[ch][i];
            for (int32_t k = off[p]; k < off[p + 1]; k++) {
                int32_t x = wl[k];
                if (s->cand_stamp[x] != gen) {
                    s->cand_stamp[x] = gen;
                    s->cands[ncand++] = x;
                }
            }
        }
    }
    PyObject *result = PyList_New(0);
    if (!result || !ncand) return result;
    if (ncand > 1) qsort(s->cands, (size_t)ncand, sizeof(int32_t), cmp_int32);

    for (int32_t i = 0; i < ncand; i++) {
        int32_t x = s->cands[i];
        if (c->wl[x].has_feeds) {
            PyObject *feeds = PyTuple_GET_ITEM(c->feeds, x);
            int in = PySet_Contains(feeds, feed);
            if (in < 0) goto fail;
            if (!in) continue;
        }
        if (!evaluate(c, s, &v, x)) continue;
        Py_ssize_t m = order_terms(c, s, &v, x);
        PyObject *texts = PyTuple_GET_ITEM(c->texts, x);
        PyObject *terms = PyTuple_New(m);
        if (!terms) goto fail;
        for (Py_ssize_t j = 0; j < m; j++)
            PyTuple_SET_ITEM(terms, j, Py_NewRef(PyTuple_GET_ITEM(texts, s->order[j])));
        PyObject *match = build_match(c, PyTuple_GET_ITEM(c->names, x), entry, terms);
        Py_DECREF(terms);
        if (!match) goto fail;
        int err = PyList_Append(result, match);
        Py_DECREF(match);
        if (err < 0) goto fail;
    }
    return result;
fail:
    Py_DECREF(result);
    return NULL;
}

static PyObject *Core_match(Core *c, PyObject *entry) {
    PyObject *title_obj = NULL, *summary_obj = NULL, *feed = NULL, *source = NULL, *link = NULL;
    PyObject *result = NULL;
    Text title = {0}, summary = {0};
    /* Everything that may run Python code happens before the scratch is used. */
    if (!(title_obj = PyObject_GetAttr(entry, str_title))) goto done;
    if (!(summary_obj = PyObject_GetAttr(entry, str_summary))) goto done;
    if (!(feed = PyObject_GetAttr(entry, str_feed))) goto done;
    if (text_of(c, title_obj, &title) < 0 || text_of(c, summary_obj, &summary) < 0) goto done;
    if (c->has_source) {
        if (!PyUnicode_Check(feed)) { PyErr_SetString(PyExc_TypeError, "entry.feed must be str"); goto done; }
        if (!(source = feed_hay(c, feed))) goto done;
    }
    if (c->link_text != Py_None) {
        PyObject *raw = PyObject_GetAttr(entry, str_link);
        if (!raw) goto done;
        PyObject *text = PyObject_CallOneArg(c->link_text, raw);
        Py_DECREF(raw);
        if (!text) goto done;
        if (!PyUnicode_Check(text)) { Py_DECREF(text); PyErr_SetString(PyExc_TypeError, "link text must be str"); goto done; }
        link = PyUnicode_AsEncodedString(text, "utf-8", "surrogatepass");
        Py_DECREF(text);
        if (!link) goto done;
    }
    if (c->busy) { /* re-entered: this call gets scratch of its own */
        Scratch own;
        if (scratch_init(&own, c) < 0) goto done;
        result = match_entry(c, &own, entry, &title, &summary, feed, source, link);
        scratch_free(&own);
    } else {
        c->busy = 1;
        result = match_entry(c, &c->scratch, entry, &title, &summary, feed, source, link);
        c->busy = 0;
    }
done:
    Py_XDECREF(title.owned);
    Py_XDECREF(summary.owned);
    Py_XDECREF(title_obj);
    Py_XDECREF(summary_obj);
    Py_XDECREF(feed);
    Py_XDECREF(source);
    Py_XDECREF(link);
    return result;
}

/* ------------------------------------------------------------------ construction */

static int32_t *int_array(PyObject *seq, const char *what, Py_ssize_t *n_out) {
    PyObject *fast = PySequence_Fast(seq, what);
    if (!fast) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    int32_t *out = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    if (!out) { Py_DECREF(fast); PyErr_NoMemory(); return NULL; }
    for (Py_ssize_t i = 0; i < n; i++) {
        long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(fast, i));
        if (v == -1 && PyErr_Occurred()) { PyMem_Free(out); Py_DECREF(fast); return NULL; }
        if (v < INT32_MIN || v > INT32_MAX) {
            PyMem_Free(out); Py_DECREF(fast);
            PyErr_Format(PyExc_OverflowError, "%s: value out of range", what);
            return NULL;
        }
        out[i] = (int32_t)v;
    }
    Py_DECREF(fast);
    *n_out = n;
    return out;
}

static int bad(const char *what) {
    PyErr_Format(PyExc_ValueError, "_matchcore.Core: bad %s", what);
    return -1;
}

/* Checks one program and returns the stack depth it needs, or -1. */
static int32_t check_program(const Core *c, const int32_t *p, int32_t n) {
    int32_t sp = 0, max = 0, i = 0;
    while (i < n) {
        switch (p[i]) {
        case OP_TERM:
            if (i + 2 >= n || p[i + 1] < F_TEXT || p[i + 1] > F_LINK || p[i + 2] < 0
                || p[i + 2] >= c->n_patterns) return -1;
            sp++; i += 3; break;
        case OP_NEAR:
            if (i + 1 >= n || p[i + 1] < 0 || p[i + 1] >= c->n_nears) return -1;
            sp++; i += 2; break;
        case OP_NOT:
            if (sp < 1) return -1;
            i += 1; break;
        case OP_AND: case OP_OR:
            if (i + 1 >= n || p[i + 1] < 1 || p[i + 1] > sp) return -1;
            sp -= p[i + 1] - 1; i += 2; break;
        default: return -1;
        }
        if (sp > max) max = sp;
    }
    return sp == 1 ? max : -1;
}

static int Core_init(Core *c, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"patterns", "traced", "triggers", "programs", "shown", "texts",
                             "names", "feeds", "nears", "tokenize", "fold", "link_text", "make",
                             "has_source", NULL};
    PyObject *patterns, *traced, *triggers, *programs, *shown, *texts, *names, *feeds, *nears;
    PyObject *tokenize, *fold, *link_text, *make;
    int has_source;
    if (c->da) { PyErr_SetString(PyExc_RuntimeError, "Core is already initialised"); return -1; }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!OOOOO!O!O!OOO!OOp:Core", kwlist,
                                     &PyList_Type, &patterns, &traced, &triggers, &programs, &shown,
                                     &PyTuple_Type, &texts, &PyTuple_Type, &names,
                                     &PyTuple_Type, &feeds, &nears, &tokenize, &PyBytes_Type, &fold, &link_text, &make,
                                     &has_source))
        return -1;
    if (!PyCallable_Check(tokenize) || (link_text != Py_None && !PyCallable_Check(link_text)))
        return bad("callables");
    if (PyBytes_GET_SIZE(fold) != FOLD_LIMIT * FOLD_SIZE) return bad("fold table");
    c->fold = PyMem_Malloc(FOLD_LIMIT * FOLD_SIZE);
    if (!c->fold) { PyErr_NoMemory(); return -1; }
    memcpy(c->fold, PyBytes_AS_STRING(fold), FOLD_LIMIT * FOLD_SIZE);
    for (Py_ssize_t i = 0; i < FOLD_LIMIT; i++) {
        const uint8_t *e = c->fold + i * FOLD_SIZE;
        if (e[0] == 0) return bad("fold table (an empty fold)");
        for (int j = 1; j <= e[0] && e[0] <= FOLD_MAX; j++)
            if (!(e[j] == ' ' || (e[j] >= 'a' && e[j] <= 'z') || (e[j] >= '0' && e[j] <= '9')))
                return bad("fold table (not a token byte)");
    }
    if (PyTuple_Check(make)) {
        if (PyTuple_GET_SIZE(make) != 4 || !PyType_Check(PyTuple_GET_ITEM(make, 0))) return bad("make");
        for (int i = 1; i < 4; i++)
            if (!Py_TYPE(PyTuple_GET_ITEM(make, i))->tp_descr_set) return bad("make descriptors");
    } else if (!PyCallable_Check(make)) return bad("make");

    Py_ssize_t np = PyList_GET_SIZE(patterns);
    if (np >= INT32_MAX) return bad("patterns");
    c->n_patterns = (int32_t)np;
    c->pat = PyMem_Calloc((size_t)np + 1, sizeof(char *));
    c->pat_len = PyMem_Calloc((size_t)np + 1, sizeof(Py_ssize_t));
    c->kind = PyMem_Calloc((size_t)np + 1, 1);
    c->traced = PyMem_Calloc((size_t)np + 1, 1);
    if (!c->pat || !c->pat_len || !c->kind || !c->traced) { PyErr_NoMemory(); return -1; }
    size_t pool = 8;
    for (Py_ssize_t i = 0; i < np; i++) {
        PyObject *b = PyList_GET_ITEM(patterns, i);
        if (!PyBytes_Check(b) || PyBytes_GET_SIZE(b) == 0 || PyBytes_GET_SIZE(b) >= INT32_MAX / 2)
            return bad("pattern (non-empty bytes)");
        pool += ((size_t)PyBytes_GET_SIZE(b) + 7) & ~(size_t)7;
    }
    c->pat_pool = PyMem_Calloc(pool, 1);
    if (!c->pat_pool) { PyErr_NoMemory(); return -1; }
    pool = 0;
    for (Py_ssize_t i = 0; i < np; i++) {
        PyObject *b = PyList_GET_ITEM(patterns, i);
        Py_ssize_t len = c->pat_len[i] = PyBytes_GET_SIZE(b);
        char *pat = c->pat_pool + pool;
        memcpy(pat, PyBytes_AS_STRING(b), (size_t)len);
        c->pat[i] = pat;
        pool += ((size_t)len + 7) & ~(size_t)7;
        /* " word ...": by its first word; " stem": by its first bytes; link: text: in the trie */
        if (pat[0] != ' ') c->kind[i] = KIND_LINK;
        else if (len < 2 || pat[1] == ' ') return bad("pattern (a word after the space)");
        else c->kind[i] = memchr(pat + 1, ' ', (size_t)len - 1) ? KIND_WORD : KIND_PREFIX;
    }
    Py_ssize_t n;
    int32_t *ids = int_array(traced, "traced", &n);
    if (!ids) return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= np) { PyMem_Free(ids); return bad("traced pattern id"); }
        c->traced[ids[i]] = 1;
    }
    PyMem_Free(ids);
    c->first_key = PyMem_Calloc((size_t)np + 1, sizeof(uint32_t));
    if (!c->first_key) { PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < np; i++) {
        c->traced[i] |= c->kind[i] == KIND_LINK;
        if (c->kind[i] == KIND_WORD) c->first_key[i] = pattern_key(c, (int32_t)i);
    }
    if (trie_build(c) < 0 || words_build(c) < 0) return -1;

    /* triggers: a sequence of three sequences of (pattern id, (watchlist, ...)) */
    Py_ssize_t n_wl = PyTuple_GET_SIZE(names);
    if (n_wl >= INT32_MAX || PyTuple_GET_SIZE(texts) != n_wl || PyTuple_GET_SIZE(feeds) != n_wl)
        return bad("watchlist tables");
    c->n_wl = (int32_t)n_wl;
    PyObject *chans = PySequence_Fast(triggers, "triggers");
    if (!chans) return -1;
    if (PySequence_Fast_GET_SIZE(chans) != CHANNELS) { Py_DECREF(chans); return bad("triggers"); }
    for (int ch = 0; ch < CHANNELS; ch++) {
        PyObject *items = PySequence_Fast(PySequence_Fast_GET_ITEM(chans, ch), "trigger channel");
        if (!items) { Py_DECREF(chans); return -1; }
        Py_ssize_t ni = PySequence_Fast_GET_SIZE(items), total = 0;
        int32_t *count = PyMem_Calloc((size_t)np + 2, sizeof(int32_t));
        c->trig_off[ch] = PyMem_Calloc((size_t)np + 2, sizeof(int32_t));
        if (!count || !c->trig_off[ch]) { PyMem_Free(count); Py_DECREF(items); Py_DECREF(chans); PyErr_NoMemory(); return -1; }
        int ok = 1;
        for (Py_ssize_t i = 0; i < ni && ok; i++) {
            PyObject *item = PySequence_Fast_GET_ITEM(items, i);
            PyObject *wls;
            long p;
            if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 || !PyTuple_Check(wls = PyTuple_GET_ITEM(item, 1))) { ok = 0; break; }
            p = PyLong_AsLong(PyTuple_GET_ITEM(item, 0));
            if (p < 0 || p >= np || !c->traced[p]) { PyErr_Clear(); ok = 0; break; }
            count[p] += (int32_t)PyTuple_GET_SIZE(wls);
            total += PyTuple_GET_SIZE(wls);
        }
        if (ok) {
            for (Py_ssize_t p = 0; p < np; p++) c->trig_off[ch][p + 1] = c->trig_off[ch][p] + count[p];
            c->trig_wl[ch] = PyMem_Malloc((size_t)(total ? total : 1) * sizeof(int32_t));
            if (!c->trig_wl[ch]) ok = -1;
            memset(count, 0, ((size_t)np + 2) * sizeof(int32_t));
        }
        for (Py_ssize_t i = 0; i < ni && ok == 1; i++) {
            PyObject *item = PySequence_Fast_GET_ITEM(items, i);
            long p = PyLong_AsLong(PyTuple_GET_ITEM(item, 0));
            PyObject *wls = PyTuple_GET_ITEM(item, 1);
            for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(wls); k++) {
                long x = PyLong_AsLong(PyTuple_GET_ITEM(wls, k));
                if (x < 0 || x >= n_wl) { PyErr_Clear(); ok = 0; break; }
                c->trig_wl[ch][c->trig_off[ch][p] + count[p]++] = (int32_t)x;
            }
        }
        PyMem_Free(count);
        Py_DECREF(items);
        if (ok != 1) { Py_DECREF(chans); if (ok < 0) { PyErr_NoMemory(); return -1; } return bad("triggers"); }
    }
    Py_DECREF(chans);

    /* nears: sequence of 6-tuples of ints */
    PyObject *nf = PySequence_Fast(nears, "nears");
    if (!nf) return -1;
    Py_ssize_t nn = PySequence_Fast_GET_SIZE(nf);
    c->n_nears = (int32_t)nn;
    c->nears = PyMem_Calloc((size_t)nn + 1, sizeof(NearSpec));
    if (!c->nears) { Py_DECREF(nf); PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < nn; i++) {
        int32_t *v = int_array(PySequence_Fast_GET_ITEM(nf, i), "near spec", &n);
        if (!v) { Py_DECREF(nf); return -1; }
        NearSpec s = {v[0], v[1], v[2], v[3], v[4], v[5]};
        PyMem_Free(v);
        if (n != 6 || s.left < 0 || s.left >= np || s.right < 0 || s.right >= np || s.distance < 0
            || s.left_words < 1 || s.right_words < 1) { Py_DECREF(nf); return bad("near spec"); }
        c->nears[i] = s;
    }
    Py_DECREF(nf);

    /* programs and shown terms, one per watchlist */
    PyObject *pf = PySequence_Fast(programs, "programs");
    if (!pf) return -1;
    PyObject *sf = PySequence_Fast(shown, "shown");
    if (!sf) { Py_DECREF(pf); return -1; }
    if (PySequence_Fast_GET_SIZE(pf) != n_wl || PySequence_Fast_GET_SIZE(sf) != n_wl) {
        Py_DECREF(pf); Py_DECREF(sf); return bad("programs/shown length");
    }
    c->prog_off = PyMem_Calloc((size_t)n_wl + 1, sizeof(int32_t));
    c->shown_off = PyMem_Calloc((size_t)n_wl + 1, sizeof(int32_t));
    if (!c->prog_off || !c->shown_off) { Py_DECREF(pf); Py_DECREF(sf); PyErr_NoMemory(); return -1; }
    Py_ssize_t prog_total = 0, shown_total = 0;
    for (Py_ssize_t i = 0; i < n_wl; i++) {
        Py_ssize_t lp = PySequence_Length(PySequence_Fast_GET_ITEM(pf, i));
        Py_ssize_t ls = PySequence_Length(PySequence_Fast_GET_ITEM(sf, i));
        if (lp < 1 || ls < 3 || ls % 3 || prog_total + lp >= INT32_MAX
            || shown_total + ls / 3 >= INT32_MAX) {
            Py_DECREF(pf); Py_DECREF(sf);
            if (!PyErr_Occurred()) bad("program or shown terms");
            return -1;
        }
        prog_total += lp;
        shown_total += ls / 3;
        c->prog_off[i + 1] = (int32_t)prog_total;
        c->shown_off[i + 1] = (int32_t)shown_total;
    }
    c->prog = PyMem_Malloc((size_t)(prog_total ? prog_total : 1) * sizeof(int32_t));
    c->shown = PyMem_Malloc((size_t)(shown_total ? shown_total : 1) * sizeof(Shown));
    if (!c->prog || !c->shown) { Py_DECREF(pf); Py_DECREF(sf); PyErr_NoMemory(); return -1; }
    c->max_stack = 1;
    c->max_shown = 1;
    for (Py_ssize_t i = 0; i < n_wl; i++) {
        int32_t *p = int_array(PySequence_Fast_GET_ITEM(pf, i), "program", &n);
        if (!p) { Py_DECREF(pf); Py_DECREF(sf); return -1; }
        memcpy(c->prog + c->prog_off[i], p, (size_t)n * sizeof(int32_t));
        PyMem_Free(p);
        int32_t depth = check_program(c, c->prog + c->prog_off[i], (int32_t)n);
        if (depth < 0) { Py_DECREF(pf); Py_DECREF(sf); return bad("program"); }
        if (depth > c->max_stack) c->max_stack = depth;
        int32_t *t = int_array(PySequence_Fast_GET_ITEM(sf, i), "shown", &n);
        if (!t) { Py_DECREF(pf); Py_DECREF(sf); return -1; }
        PyObject *wl_texts = PyTuple_GET_ITEM(texts, i);
        if (!PyTuple_Check(wl_texts)) { PyMem_Free(t); Py_DECREF(pf); Py_DECREF(sf); return bad("texts"); }
        for (Py_ssize_t k = 0; k < n / 3; k++) {
            Shown s = {t[3 * k], t[3 * k + 1], t[3 * k + 2]};
            if (s.field < F_TEXT || s.field > F_LINK || s.pattern < 0 || s.pattern >= np || s.text < 0
                || s.text >= PyTuple_GET_SIZE(wl_texts)) {
                PyMem_Free(t); Py_DECREF(pf); Py_DECREF(sf); return bad("shown term");
            }
            c->shown[c->shown_off[i] + k] = s;
        }
        if (n / 3 > c->max_shown) c->max_shown = (int32_t)(n / 3);
        PyMem_Free(t);
    }
    Py_DECREF(pf);
    Py_DECREF(sf);

    c->names = Py_NewRef(names);
    c->texts = Py_NewRef(texts);
    c->feeds = Py_NewRef(feeds);
    c->tokenize = Py_NewRef(tokenize);
    c->link_text = Py_NewRef(link_text);
    c->make = Py_NewRef(make);
    c->feed_cache = PyDict_New();
    if (!c->feed_cache) return -1;
    c->has_source = has_source;
    c->hot = PyMem_Calloc((size_t)np + 1, sizeof(PatHot));
    c->wl = PyMem_Calloc((size_t)n_wl + 1, sizeof(WlHot));
    if (!c->hot || !c->wl) { PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < np; i++)
        c->hot[i] = (PatHot){c->pat[i], (int32_t)c->pat_len[i], c->first_key[i], c->kind[i], c->traced[i]};
    for (Py_ssize_t i = 0; i < n_wl; i++) {
        PyObject *f = PyTuple_GET_ITEM(feeds, i);
        if (f != Py_None && !PyAnySet_Check(f)) return bad("feeds (a frozenset or None)");
        c->wl[i] = (WlHot){c->prog_off[i], c->prog_off[i + 1], c->shown_off[i], c->shown_off[i + 1],
                           f != Py_None};
    }
    return scratch_init(&c->scratch, c);
}

static int Core_traverse(Core *c, visitproc visit, void *arg) {
    Py_VISIT(c->names);
    Py_VISIT(c->texts);
    Py_VISIT(c->feeds);
    Py_VISIT(c->tokenize);
    Py_VISIT(c->link_text);
    Py_VISIT(c->make);
    Py_VISIT(c->feed_cache);
    return 0;
}

static int Core_clear(Core *c) {
    Py_CLEAR(c->names);
    Py_CLEAR(c->texts);
    Py_CLEAR(c->feeds);
    Py_CLEAR(c->tokenize);
    Py_CLEAR(c->link_text);
    Py_CLEAR(c->make);
    Py_CLEAR(c->feed_cache);
    return 0;
}

static void Core_dealloc(Core *c) {
    PyObject_GC_UnTrack(c);
    Core_clear(c);
    PyMem_Free(c->da);
    PyMem_Free(c->kind);
    PyMem_Free(c->traced);
    PyMem_Free(c->first_key);
    PyMem_Free(c->hot);
    PyMem_Free(c->wl);
    PyMem_Free(c->words);
    PyMem_Free(c->words_pool);
    PyMem_Free(c->filter);
    PyMem_Free(c->pat);
    PyMem_Free(c->pat_pool);
    PyMem_Free(c->fold);
    PyMem_Free(c->pat_len);
    for (int ch = 0; ch < CHANNELS; ch++) {
        PyMem_Free(c->trig_off[ch]);
        PyMem_Free(c->trig_wl[ch]);
    }
    PyMem_Free(c->prog_off);
    PyMem_Free(c->prog);
    PyMem_Free(c->shown_off);
    PyMem_Free(c->shown);
    PyMem_Free(c->nears);
    scratch_free(&c->scratch);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyObject *Core_call_match(Core *c, PyObject *entry) {
    if (!c->da || !c->make) {
        PyErr_SetString(PyExc_RuntimeError, "Core is not initialised");
        return NULL;
    }
    return Core_match(c, entry);
}

/* Core.tokens(text): the tokens match() puts in the hay for text, as str; for
 * tests, which hold it to text.token_string. */
static PyObject *Core_tokens(Core *c, PyObject *text) {
    if (!c->fold) { PyErr_SetString(PyExc_RuntimeError, "Core is not initialised"); return NULL; }
    Text t;
    if (text_of(c, text, &t) < 0) return NULL;
    char *buf = PyMem_Malloc((size_t)t.room + 1);
    int32_t *starts = PyMem_Malloc(((size_t)t.room + 1) * sizeof(int32_t));
    PyObject *result = NULL;
    if (!buf || !starts) PyErr_NoMemory();
    else {
        Py_ssize_t n = 0, w = put_tokens(c, &t, buf, 0, starts, &n);
        result = PyUnicode_DecodeUTF8(buf, w, "surrogatepass");
    }
    PyMem_Free(buf);
    PyMem_Free(starts);
    Py_XDECREF(t.owned);
    return result;
}

static PyMethodDef Core_methods[] = {
    {"match", (PyCFunction)Core_call_match, METH_O,
     "match(entry) -> list[Match]: the watchlists entry satisfies, in compile order."},
    {"tokens", (PyCFunction)Core_tokens, METH_O, "tokens(text) -> str: the hay's words for text."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "monitor._matchcore.Core",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Compiled watchlists; built by monitor.match.Matcher.compile.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Core_init,
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_traverse = (traverseproc)Core_traverse,
    .tp_clear = (inquiry)Core_clear,
    .tp_methods = Core_methods,
};


static PyMethodDef module_methods[] = {
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "monitor._matchcore",
    "The matcher's per-entry hot loop in C: tokenise, walk the trigger trie, evaluate\n"
    "(monitor.match).",
    -1, module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__matchcore(void) {
    if (PyType_Ready(&CoreType) < 0) return NULL;
    token_table_init();
    low_bytes_init();
    str_title = PyUnicode_InternFromString("title");
    str_summary = PyUnicode_InternFromString("summary");
    str_feed = PyUnicode_InternFromString("feed");
    str_link = PyUnicode_InternFromString("link");
    if (!str_title || !str_summary || !str_feed || !str_link) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Core", (PyObject *)&CoreType) < 0) { Py_DECREF(m); return NULL; }
    return m;
}

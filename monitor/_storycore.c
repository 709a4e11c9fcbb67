/* monitor._storycore: the story index's feature table (monitor.dedupe, issue #11).
 *
 * What the index holds per feature (a word or word pair of the window's
 * entries), packed: its document count, and per story holding it the number
 * of the story's members with it and its weight in the story's centroid.
 * Held as Python dicts of dicts and tuples this was most of the index's
 * memory; here a feature is one 32-byte slot, keyed by the str's own hash and
 * width (see key_of: the index lives and dies with the process, and two of a
 * window's features sharing a 64-bit key by chance is as likely as a cosmic-ray
 * bit flip), and a feature held by several stories points at one array of
 * 16-byte postings sorted by story number.
 *
 * Stories are numbers (StoryIndex hands them out). Table.scores is the
 * candidate loop of StoryIndex._most_similar: the same steps, in the same
 * order, as dedupe's _PyTable.scores, so both give the same scores to the
 * last bit (tests/test_dedupe.py checks it, and `make asan` runs it under
 * AddressSanitizer and UBSan). So are an entry's side (its words, its vector,
 * what it shares with a story: the section so named below) and the module's
 * functions, against the Python they stand for.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct { int32_t story; uint32_t count; double weight; } Post;

typedef struct {
    uint64_t key;
    uint32_t df;  /* members holding the feature; 0 in an empty or deleted slot */
    uint32_t n;   /* stories holding it; DELETED in a deleted slot */
    union { Post one; Post *many; } p;  /* n == 1: one; n > 1: many, sorted by story */
} Slot;

#define DELETED UINT32_MAX

typedef struct {
    PyObject_HEAD
    Slot *slots;
    size_t cap;  /* a power of two, or 0 */
    size_t live, deleted;
    size_t posts;  /* postings allocated in arrays (for nbytes) */
} Table;

static inline int is_live(const Slot *s) { return s->df != 0 || (s->n != 0 && s->n != DELETED); }
static inline int is_empty(const Slot *s) { return s->df == 0 && s->n == 0; }

/* The smallest power of two >= n (n >= 2): a postings array's capacity. */
static size_t cap_for(uint32_t n) {
    size_t c = 2;
    while (c < n) c <<= 1;
    return c;
}

static inline Post *posts_of(Slot *s) { return s->n == 1 ? &s->p.one : s->p.many; }

static int key_of(PyObject *feature, uint64_t *key) {
    if (!PyUnicode_Check(feature)) {
        PyErr_SetString(PyExc_TypeError, "features are str");
        return -1;
    }
    Py_hash_t h = PyObject_Hash(feature);
    if (h == -1) return -1;
    /* A str hashes its characters as stored, one, two or four bytes each, so "al"
     * and U+6C61 (stored as the bytes 61 6C) hash alike, whatever the hash seed.
     * Strings stored at different widths are never equal: the width tells them
     * apart, and hashes of one width collide only by chance. */
    *key = (uint64_t)h ^ (uint64_t)(PyUnicode_KIND(feature) - 1) * 0x9E3779B97F4A7C15u;
    return 0;
}

static Slot *find(const Table *t, uint64_t key) {
    if (!t->cap) return NULL;
    size_t mask = t->cap - 1;
    for (size_t j = (size_t)key & mask;; j = (j + 1) & mask) {
        Slot *s = &t->slots[j];
        if (is_empty(s)) return NULL;
        if (s->key == key && is_live(s)) return s;
    }
}

static int resize(Table *t, size_t cap) {
    Slot *slots = PyMem_Calloc(cap, sizeof(Slot));
    if (!slots) {
        PyErr_NoMemory();
        return -1;
    }
    size_t mask = cap - 1;
    for (size_t i = 0; i < t->cap; i++) {
        Slot *s = &t->slots[i];
        if (!is_live(s)) continue;
        size_t j = (size_t)s->key & mask;
        while (!is_empty(&slots[j])) j = (j + 1) & mask;
        slots[j] = *s;
    }
    PyMem_Free(t->slots);
    t->slots = slots;
    t->cap = cap;
    t->deleted = 0;
    return 0;
}

/* The live slot of key, made (df 0, no postings) if absent; NULL on error. */
static Slot *insert(Table *t, uint64_t key) {
    Slot *s = find(t, key);
    if (s) return s;
    if (4 * (t->live + t->deleted + 1) > 3 * t->cap) {
        size_t cap = t->cap ? t->cap : 1024;
        while (5 * (t->live + 1) > 3 * cap) cap <<= 1;  /* at most 60% full after */
        if (resize(t, cap) < 0) return NULL;
    }
    size_t mask = t->cap - 1, j = (size_t)key & mask;
    while (is_live(&t->slots[j])) j = (j + 1) & mask;
    s = &t->slots[j];
    if (!is_empty(s)) t->deleted--;  /* reusing a deleted slot */
    *s = (Slot){.key = key};
    t->live++;
    return s;
}

/* The story's posting in s, or NULL. */
static Post *post_find(Slot *s, int32_t story) {
    if (s->n == 1) return s->p.one.story == story ? &s->p.one : NULL;
    Post *a = s->p.many;
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (a[mid].story < story) lo = mid + 1;
        else hi = mid;
    }
    return lo < s->n && a[lo].story == story ? &a[lo] : NULL;
}

/* A new posting (story, count 1, weight) in s, kept sorted; -1 on error. */
static int post_add(Table *t, Slot *s, int32_t story, double weight) {
    Post add = {story, 1, weight};
    if (s->n == 0) {
        s->p.one = add;
        s->n = 1;
        return 0;
    }
    if (s->n == 1) {
        Post *a = PyMem_Malloc(2 * sizeof(Post));
        if (!a) {
            PyErr_NoMemory();
            return -1;
        }
        Post one = s->p.one;
        a[0] = one.story < story ? one : add;
        a[1] = one.story < story ? add : one;
        s->p.many = a;
        s->n = 2;
        t->posts += 2;
        return 0;
    }
    if (cap_for(s->n) == s->n) {  /* full */
        Post *a = PyMem_Realloc(s->p.many, 2 * (size_t)s->n * sizeof(Post));
        if (!a) {
            PyErr_NoMemory();
            return -1;
        }
        s->p.many = a;
        t->posts += s->n;
    }
    Post *a = s->p.many;
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (a[mid].story < story) lo = mid + 1;
        else hi = mid;
    }
    memmove(&a[lo + 1], &a[lo], (s->n - lo) * sizeof(Post));
    a[lo] = add;
    s->n++;
    return 0;
}

/* Drop the posting at p from s; a slot left with none is deleted. */
static void post_del(Table *t, Slot *s, Post *p) {
    if (s->n == 1) {
        s->n = DELETED;
        s->df = 0;
        t->live--;
        t->deleted++;
        return;
    }
    Post *a = s->p.many;
    size_t i = (size_t)(p - a), before = cap_for(s->n);
    memmove(&a[i], &a[i + 1], (s->n - i - 1) * sizeof(Post));
    s->n--;
    if (s->n == 1) {
        Post one = a[0];
        PyMem_Free(a);
        t->posts -= before;
        s->p.one = one;
        return;
    }
    size_t after = cap_for(s->n);
    if (after < before) {
        Post *smaller = PyMem_Realloc(a, after * sizeof(Post));
        if (smaller) {  /* else keep the bigger array */
            s->p.many = smaller;
            t->posts -= before - after;
        }
    }
}

static void table_clear(Table *t) {
    for (size_t i = 0; i < t->cap; i++) {
        Slot *s = &t->slots[i];
        if (is_live(s) && s->n > 1) PyMem_Free(s->p.many);
    }
    PyMem_Free(t->slots);
    t->slots = NULL;
    t->cap = t->live = t->deleted = t->posts = 0;
}

static void Table_dealloc(Table *t) {
    table_clear(t);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static PyObject *Table_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "Table() takes no arguments");
        return NULL;
    }
    Table *t = (Table *)type->tp_alloc(type, 0);
    return (PyObject *)t;
}

static Py_ssize_t Table_len(Table *t) { return (Py_ssize_t)t->live; }

/* A member's arguments: story number, features (a tuple of str) with their keys,
 * checked before anything changes, and their weights (float32s, as many);
 * member_free releases them. */
typedef struct {
    int32_t story;
    PyObject *features;
    uint64_t *keys;
    Py_buffer weights;
    Py_ssize_t n;
} Member;

static int story_arg(PyObject *obj, int32_t *story) {
    long v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < 0 || v > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "story numbers are 0 to 2**31 - 1");
        return -1;
    }
    *story = (int32_t)v;
    return 0;
}

static void member_free(Member *m) {
    PyMem_Free(m->keys);
    PyBuffer_Release(&m->weights);
}

static int member_args(PyObject *args, Member *m) {
    PyObject *story, *array;
    if (!PyArg_ParseTuple(args, "OO!O", &story, &PyTuple_Type, &m->features, &array)) return -1;
    if (story_arg(story, &m->story) < 0) return -1;
    if (PyObject_GetBuffer(array, &m->weights, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) return -1;
    Py_buffer *w = &m->weights;
    m->n = PyTuple_GET_SIZE(m->features);
    m->keys = NULL;
    const char *problem = NULL;
    if (w->itemsize != sizeof(float) || !w->format || strcmp(w->format, "f"))
        problem = "weights: an array('f')";
    else if (w->len / w->itemsize != m->n)
        problem = "features and weights differ in length";
    if (problem) {
        PyErr_SetString(problem[0] == 'w' ? PyExc_TypeError : PyExc_ValueError, problem);
        PyBuffer_Release(w);
        return -1;
    }
    m->keys = PyMem_Malloc((size_t)(m->n ? m->n : 1) * sizeof(uint64_t));
    if (!m->keys) {
        PyErr_NoMemory();
        member_free(m);
        return -1;
    }
    for (Py_ssize_t i = 0; i < m->n; i++) {
        if (key_of(PyTuple_GET_ITEM(m->features, i), &m->keys[i]) < 0) {
            member_free(m);
            return -1;
        }
    }
    return 0;
}

static PyObject *Table_accumulate(Table *t, PyObject *args) {
    Member m;
    if (member_args(args, &m) < 0) return NULL;
    const uint64_t *keys = m.keys;
    const float *w = m.weights.buf;
    double dot = 0.0, norm2 = 0.0;
    for (Py_ssize_t i = 0; i < m.n; i++) {
        double weight = (double)w[i];
        norm2 += weight * weight;
        Slot *s = insert(t, keys[i]);
        if (!s) goto error;
        Post *p = s->n ? post_find(s, m.story) : NULL;
        if (p) {
            dot += p->weight * weight;
            p->weight = p->weight + weight;
            p->count++;
        } else if (post_add(t, s, m.story, weight) < 0) {
            if (!s->n) {  /* the slot just made holds nothing: take it back */
                s->n = DELETED;
                t->live--;
                t->deleted++;
            }
            goto error;
        }
        s->df++;
    }
    member_free(&m);
    return Py_BuildValue("(dd)", dot, norm2);
error:
    member_free(&m);
    return NULL;
}

static PyObject *Table_withdraw(Table *t, PyObject *args) {
    Member m;
    if (member_args(args, &m) < 0) return NULL;
    const uint64_t *keys = m.keys;
    for (Py_ssize_t i = 0; i < m.n; i++) {  /* all there, or nothing changes */
        Slot *s = find(t, keys[i]);
        if (!s || !post_find(s, m.story)) {
            PyErr_SetObject(PyExc_KeyError, PyTuple_GET_ITEM(m.features, i));
            member_free(&m);
            return NULL;
        }
    }
    const float *w = m.weights.buf;
    double dot = 0.0, norm2 = 0.0;
    for (Py_ssize_t i = 0; i < m.n; i++) {
        double weight = (double)w[i];
        norm2 += weight * weight;
        Slot *s = find(t, keys[i]);
        Post *p = s ? post_find(s, m.story) : NULL;
        if (!p) continue;  /* a feature twice in one member: gone with the first */
        dot += p->weight * weight;
        s->df--;
        if (--p->count) {
            p->weight = p->weight - weight;
        } else {  /* no member of the story has it now: drop it, and any rounding error */
            post_del(t, s, p);
        }
    }
    member_free(&m);
    return Py_BuildValue("(dd)", dot, norm2);
}

/* The slot of feature, or NULL (with no error set unless the key failed). */
static Slot *slot_of(Table *t, PyObject *feature, int *error) {
    uint64_t key;
    *error = key_of(feature, &key) < 0;
    return *error ? NULL : find(t, key);
}

static PyObject *Table_df(Table *t, PyObject *feature) {
    int error;
    Slot *s = slot_of(t, feature, &error);
    if (error) return NULL;
    return PyLong_FromUnsignedLong(s ? s->df : 0);
}

static PyObject *Table_size(Table *t, PyObject *feature) {
    int error;
    Slot *s = slot_of(t, feature, &error);
    if (error) return NULL;
    return PyLong_FromUnsignedLong(s ? s->n : 0);
}

/* (feature, story) -> its posting, or NULL with *error telling why. */
static Post *post_of(Table *t, PyObject *args, int *error) {
    PyObject *feature, *story;
    int32_t no;
    *error = 1;
    if (!PyArg_ParseTuple(args, "OO", &feature, &story) || story_arg(story, &no) < 0) return NULL;
    Slot *s = slot_of(t, feature, error);
    return s ? post_find(s, no) : NULL;
}

static PyObject *Table_count(Table *t, PyObject *args) {
    int error;
    Post *p = post_of(t, args, &error);
    if (!p && error) return NULL;
    return PyLong_FromUnsignedLong(p ? p->count : 0);
}

static PyObject *Table_weight(Table *t, PyObject *args) {
    int error;
    Post *p = post_of(t, args, &error);
    if (!p && error) return NULL;
    return PyFloat_FromDouble(p ? p->weight : 0.0);
}

static PyObject *Table_nbytes(Table *t, PyObject *unused) {
    return PyLong_FromSize_t(t->cap * sizeof(Slot) + t->posts * sizeof(Post) + sizeof(Table));
}

/* ---- an entry's side: its vector, and what a story shares with it ------------
 *
 * StoryIndex's questions about one entry, one call each instead of one Python
 * call per word or feature: the same steps in the same order as dedupe's
 * _PyTable (vector, concepts, shared, holding, weights, frequent) and
 * _filter_words, so the same floats to the last bit and the same words.
 */

/* "a b": a word pair as dedupe's _grams spells it (f"{a} {b}"). */
static PyObject *pair_of(PyObject *a, PyObject *b) {
    Py_ssize_t la = PyUnicode_GET_LENGTH(a), lb = PyUnicode_GET_LENGTH(b);
    if (la > PY_SSIZE_T_MAX - 1 - lb) {
        PyErr_NoMemory();
        return NULL;
    }
    /* Both are canonical, so the wider of their kinds is the pair's. */
    Py_UCS4 max = Py_MAX(PyUnicode_MAX_CHAR_VALUE(a), PyUnicode_MAX_CHAR_VALUE(b));
    PyObject *pair = PyUnicode_New(la + 1 + lb, max);
    if (!pair) return NULL;
    if (PyUnicode_CopyCharacters(pair, 0, a, 0, la) < 0 ||
        PyUnicode_CopyCharacters(pair, la + 1, b, 0, lb) < 0) {
        Py_DECREF(pair);
        return NULL;
    }
    PyUnicode_WRITE(PyUnicode_KIND(pair), PyUnicode_DATA(pair), la, ' ');
    return pair;
}

/* texts as a tuple of tuples of str (exact, so that comparing them runs no Python
 * code), and the number of words in all; NULL on error. */
static PyObject *word_texts(PyObject *texts, Py_ssize_t *words) {
    PyObject *ts = PySequence_Tuple(texts);
    if (!ts) return NULL;
    PyObject *out = PyTuple_New(PyTuple_GET_SIZE(ts));
    *words = 0;
    for (Py_ssize_t i = 0; out && i < PyTuple_GET_SIZE(ts); i++) {
        PyObject *text = PySequence_Tuple(PyTuple_GET_ITEM(ts, i));
        if (!text) {
            Py_CLEAR(out);
            break;
        }
        PyTuple_SET_ITEM(out, i, text);
        *words += PyTuple_GET_SIZE(text);
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(text); j++) {
            if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(text, j))) {
                PyErr_SetString(PyExc_TypeError, "words are str");
                Py_CLEAR(out);  /* and text with it */
                break;
            }
        }
    }
    Py_DECREF(ts);
    return out;
}

/* Distinct words (or features), each with its parent in a union-find forest: an
 * open-addressing table sized for as many as will be put in, so it never grows;
 * it borrows the words. */
typedef struct { PyObject *word; Py_hash_t hash; Py_ssize_t parent; } Node;
typedef struct { Node *nodes; Py_ssize_t *slots; Py_ssize_t n; size_t mask; } Nodes;

static int nodes_init(Nodes *ns, Py_ssize_t most) {
    ns->nodes = NULL;
    ns->slots = NULL;
    if (most < 0 || (size_t)most > PY_SSIZE_T_MAX / (4 * sizeof(Node))) {  /* no overflow */
        PyErr_NoMemory();
        return -1;
    }
    size_t cap = 8;
    while (cap < 2 * (size_t)most) cap <<= 1;
    ns->n = 0;
    ns->mask = cap - 1;
    ns->nodes = PyMem_Malloc((size_t)(most ? most : 1) * sizeof(Node));
    ns->slots = PyMem_Malloc(cap * sizeof(Py_ssize_t));
    if (!ns->nodes || !ns->slots) {
        PyMem_Free(ns->nodes);
        PyMem_Free(ns->slots);
        ns->nodes = NULL;
        ns->slots = NULL;
        PyErr_NoMemory();
        return -1;
    }
    for (size_t j = 0; j < cap; j++) ns->slots[j] = -1;
    return 0;
}

static void nodes_free(Nodes *ns) {
    PyMem_Free(ns->nodes);
    PyMem_Free(ns->slots);
}

static int same_str(PyObject *a, PyObject *b) {
    Py_ssize_t len = PyUnicode_GET_LENGTH(a);
    int kind = PyUnicode_KIND(a);
    return a == b || (len == PyUnicode_GET_LENGTH(b) && kind == PyUnicode_KIND(b) &&
                      !memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)len * (size_t)kind));
}

/* The node of word (an exact str), made if add and absent; -1 if absent, -2 on error. */
static Py_ssize_t nodes_get(Nodes *ns, PyObject *word, int add) {
    Py_hash_t h = PyObject_Hash(word);
    if (h == -1) return -2;
    size_t j = (size_t)h & ns->mask;
    for (;; j = (j + 1) & ns->mask) {
        Py_ssize_t i = ns->slots[j];
        if (i < 0) break;
        if (ns->nodes[i].hash == h && same_str(ns->nodes[i].word, word)) return i;
    }
    if (!add) return -1;
    ns->slots[j] = ns->n;
    ns->nodes[ns->n] = (Node){word, h, ns->n};
    return ns->n++;
}

static Py_ssize_t root(Nodes *ns, Py_ssize_t i) {
    while (ns->nodes[i].parent != i) {
        ns->nodes[i].parent = ns->nodes[ns->nodes[i].parent].parent;
        i = ns->nodes[i].parent;
    }
    return i;
}

/* An entry's features as dedupe's _grams makes them: each word of texts[i] at
 * weights[i], each pair of neighbours at weights[i] * pair_weight, each at the
 * highest weight it gets, in the order first met (a feature not yet met goes in
 * only at a weight above 0.0, as Python's get(f, 0.0) < weight has it). */
typedef struct {
    PyObject *texts;  /* word_texts(): the words, borrowed by nodes */
    Nodes nodes;      /* node i: feature i */
    double *weight;
    PyObject **pairs; /* the pairs made for features, owned */
    Py_ssize_t npairs;
} Grams;

static void grams_free(Grams *g) {
    for (Py_ssize_t i = 0; i < g->npairs; i++) Py_DECREF(g->pairs[i]);
    PyMem_Free(g->pairs);
    PyMem_Free(g->weight);
    nodes_free(&g->nodes);
    Py_XDECREF(g->texts);
}

/* feature at weight, unless it is there at as much already; -1 on error. */
static int grams_put(Grams *g, PyObject *feature, double weight) {
    Py_ssize_t before = g->nodes.n, k = nodes_get(&g->nodes, feature, weight > 0.0);
    if (k == -2) return -1;
    if (k >= 0 && (g->nodes.n > before || g->weight[k] < weight)) g->weight[k] = weight;
    return 0;
}

static int grams(Grams *g, PyObject *texts, PyObject *weights, double pair_weight) {
    *g = (Grams){NULL, {NULL, NULL, 0, 0}, NULL, NULL, 0};
    Py_ssize_t words;
    PyObject *ws = PySequence_Tuple(weights);  /* no __float__ run below can change it */
    g->texts = ws ? word_texts(texts, &words) : NULL;
    if (!g->texts) goto error;
    if (words > PY_SSIZE_T_MAX / 4) {  /* 2 * words + 1 doubles below, and more */
        PyErr_NoMemory();
        goto error;
    }
    if (nodes_init(&g->nodes, 2 * words) < 0) goto error;
    g->weight = PyMem_Malloc((size_t)(2 * words + 1) * sizeof(double));
    g->pairs = PyMem_Malloc((size_t)(words + 1) * sizeof(PyObject *));
    if (!g->weight || !g->pairs) {
        PyErr_NoMemory();
        goto error;
    }
    Py_ssize_t n = Py_MIN(PyTuple_GET_SIZE(g->texts), PyTuple_GET_SIZE(ws));
    for (Py_ssize_t i = 0; i < n; i++) {
        double weight = PyFloat_AsDouble(PyTuple_GET_ITEM(ws, i));
        if (weight == -1.0 && PyErr_Occurred()) goto error;
        double pweight = weight * pair_weight;
        PyObject *text = PyTuple_GET_ITEM(g->texts, i);
        Py_ssize_t m = PyTuple_GET_SIZE(text);
        for (Py_ssize_t j = 0; j < m; j++)
            if (grams_put(g, PyTuple_GET_ITEM(text, j), weight) < 0) goto error;
        for (Py_ssize_t j = 1; j < m; j++) {
            PyObject *pair = pair_of(PyTuple_GET_ITEM(text, j - 1), PyTuple_GET_ITEM(text, j));
            if (!pair) goto error;
            g->pairs[g->npairs++] = pair;  /* kept while a node may borrow it */
            if (grams_put(g, pair, pweight) < 0) goto error;
        }
    }
    Py_DECREF(ws);
    return 0;
error:
    Py_XDECREF(ws);
    grams_free(g);
    return -1;
}

/* grams(texts, weights, pair_weight) -> dedupe's _grams, which see. */
static PyObject *story_grams(PyObject *module, PyObject *args) {
    PyObject *texts, *weights;
    double pair_weight;
    if (!PyArg_ParseTuple(args, "OOd", &texts, &weights, &pair_weight)) return NULL;
    Grams g;
    if (grams(&g, texts, weights, pair_weight) < 0) return NULL;
    PyObject *out = PyDict_New();
    for (Py_ssize_t i = 0; out && i < g.nodes.n; i++) {
        PyObject *weight = PyFloat_FromDouble(g.weight[i]);
        if (!weight || PyDict_SetItem(out, g.nodes.nodes[i].word, weight) < 0) Py_CLEAR(out);
        Py_XDECREF(weight);
    }
    grams_free(&g);
    return out;
}

#if PY_VERSION_HEX >= 0x030C0000
/* From 3.12 on, sum() of floats compensates its rounding: the norm is summed by
 * sum() itself, as _PyTable.vector sums it. */
static int sum_of_squares(const double *weighted, Py_ssize_t n, double *out) {
    PyObject *squares = PyList_New(n), *builtins = NULL, *sum = NULL, *total = NULL;
    if (!squares) return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *sq = PyFloat_FromDouble(weighted[i] * weighted[i]);
        if (!sq) goto done;
        PyList_SET_ITEM(squares, i, sq);
    }
    builtins = PyImport_ImportModule("builtins");
    sum = builtins ? PyObject_GetAttrString(builtins, "sum") : NULL;
    total = sum ? PyObject_CallOneArg(sum, squares) : NULL;
    if (total) *out = PyFloat_AsDouble(total);
done:
    Py_XDECREF(total);
    Py_XDECREF(sum);
    Py_XDECREF(builtins);
    Py_DECREF(squares);
    return total && !(*out == -1.0 && PyErr_Occurred()) ? 0 : -1;
}
#endif

/* vector(texts, weights, pair_weight, total) -> unit vector: see _PyTable.vector. */
static PyObject *Table_vector(Table *t, PyObject *args) {
    PyObject *texts, *weights;
    double pair_weight;
    Py_ssize_t total;
    if (!PyArg_ParseTuple(args, "OOdn", &texts, &weights, &pair_weight, &total)) return NULL;
    if (total < 1) {
        PyErr_SetString(PyExc_ValueError, "total must be positive");
        return NULL;
    }
    Grams g;
    if (grams(&g, texts, weights, pair_weight) < 0) return NULL;
    Py_ssize_t n = g.nodes.n;
    PyObject *vector = PyDict_New();
    if (!vector) goto error;
    double norm2 = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {  /* the grams' weights become TF-IDF weights */
        uint64_t key;
        if (key_of(g.nodes.nodes[i].word, &key) < 0) goto error;
        Slot *s = find(t, key);
        uint64_t df = s ? s->df : 0;
        /* total / (df + 1) divides two ints that doubles hold exactly: as Python does */
        g.weight[i] = g.weight[i] * log((double)total / (double)(df + 1));
        norm2 += g.weight[i] * g.weight[i];
    }
#if PY_VERSION_HEX >= 0x030C0000
    if (sum_of_squares(g.weight, n, &norm2) < 0) goto error;
#endif
    double norm = sqrt(norm2);
    for (Py_ssize_t i = 0; norm != 0.0 && i < n; i++) {
        PyObject *unit = PyFloat_FromDouble(g.weight[i] / norm);
        int rc = unit ? PyDict_SetItem(vector, g.nodes.nodes[i].word, unit) : -1;
        Py_XDECREF(unit);
        if (rc < 0) goto error;
    }
    grams_free(&g);
    return vector;
error:
    Py_XDECREF(vector);
    grams_free(&g);
    return NULL;
}

/* 1 if a member of story holds feature, 0 if not, -1 on error. */
static int holds(const Table *t, int32_t story, PyObject *feature) {
    uint64_t key;
    if (key_of(feature, &key) < 0) return -1;
    Slot *s = find(t, key);
    return s && post_find(s, story) ? 1 : 0;
}

/* concepts(story, texts, common, titled): dedupe's _concepts of texts and what the
 * story holds: runs of shared words whose pairs it holds too are one concept. */
static PyObject *Table_concepts(Table *t, PyObject *args) {
    PyObject *story_obj, *texts, *common, *titled;
    int32_t story;
    if (!PyArg_ParseTuple(args, "OOOO", &story_obj, &texts, &common, &titled) ||
        story_arg(story_obj, &story) < 0)
        return NULL;
    Py_ssize_t most;
    PyObject *ts = word_texts(texts, &most);
    if (!ts) return NULL;
    Nodes ns;
    char *marked = NULL;
    if (nodes_init(&ns, most) < 0) {
        Py_DECREF(ts);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(ts); i++) {
        PyObject *words = PyTuple_GET_ITEM(ts, i), *prev_word = NULL;
        Py_ssize_t prev = -1;
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(words); j++) {
            PyObject *word = PyTuple_GET_ITEM(words, j);
            int shared = holds(t, story, word);
            if (shared > 0) {
                int everywhere = PySequence_Contains(common, word);
                shared = everywhere < 0 ? -1 : !everywhere;
            }
            if (shared < 0) goto error;
            if (!shared) {
                prev = -1;
                continue;
            }
            Py_ssize_t k = nodes_get(&ns, word, 1);
            if (k < 0) goto error;
            if (prev >= 0) {
                PyObject *pair = pair_of(prev_word, word);
                int joined = pair ? holds(t, story, pair) : -1;
                Py_XDECREF(pair);
                if (joined < 0) goto error;
                if (joined) ns.nodes[root(&ns, k)].parent = root(&ns, prev);
            }
            prev = k;
            prev_word = word;
        }
    }
    Py_ssize_t roots = 0, in_title = 0;
    for (Py_ssize_t k = 0; k < ns.n; k++) roots += root(&ns, k) == k;
    marked = PyMem_Calloc((size_t)(ns.n ? ns.n : 1), 1);
    if (!marked) {
        PyErr_NoMemory();
        goto error;
    }
    PyObject *title = PyTuple_GET_SIZE(ts) ? PyTuple_GET_ITEM(ts, 0) : NULL;
    for (Py_ssize_t j = 0; title && j < PyTuple_GET_SIZE(title); j++) {
        PyObject *word = PyTuple_GET_ITEM(title, j);
        Py_ssize_t k = nodes_get(&ns, word, 0);
        if (k == -2) goto error;
        if (k < 0) continue;
        if (titled != Py_None) {
            int in = PySequence_Contains(titled, word);
            if (in < 0) goto error;
            if (!in) continue;
        }
        Py_ssize_t r = root(&ns, k);
        in_title += !marked[r];
        marked[r] = 1;
    }
    PyMem_Free(marked);
    nodes_free(&ns);
    Py_DECREF(ts);
    return PyFloat_FromDouble((double)in_title + 0.5 * (double)(roots - in_title));
error:
    PyMem_Free(marked);
    nodes_free(&ns);
    Py_DECREF(ts);
    return NULL;
}

/* shared(story, texts, common) -> dedupe's _shared_words of texts and what the story
 * holds: the words it holds, not common, once each, in order. */
static PyObject *Table_shared(Table *t, PyObject *args) {
    PyObject *story_obj, *texts, *common;
    int32_t story;
    if (!PyArg_ParseTuple(args, "OOO", &story_obj, &texts, &common) ||
        story_arg(story_obj, &story) < 0)
        return NULL;
    Py_ssize_t most;
    PyObject *ts = word_texts(texts, &most);
    if (!ts) return NULL;
    PyObject *out = PyList_New(0);
    Nodes seen;
    if (!out || nodes_init(&seen, most) < 0) {
        Py_XDECREF(out);
        Py_DECREF(ts);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(ts); i++) {
        PyObject *words = PyTuple_GET_ITEM(ts, i);
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(words); j++) {
            PyObject *word = PyTuple_GET_ITEM(words, j);
            int shared = holds(t, story, word);
            if (shared > 0) {
                int everywhere = PySequence_Contains(common, word);
                shared = everywhere < 0 ? -1 : !everywhere;
            }
            if (shared < 0) goto error;
            if (!shared) continue;
            Py_ssize_t before = seen.n, k = nodes_get(&seen, word, 1);
            if (k < 0) goto error;
            if (seen.n > before && PyList_Append(out, word) < 0) goto error;
        }
    }
    nodes_free(&seen);
    Py_DECREF(ts);
    PyObject *tuple = PyList_AsTuple(out);
    Py_DECREF(out);
    return tuple;
error:
    nodes_free(&seen);
    Py_DECREF(ts);
    Py_DECREF(out);
    return NULL;
}

/* holding(story, features) -> the set of those features the story holds. */
static PyObject *Table_holding(Table *t, PyObject *args) {
    PyObject *story_obj, *features;
    int32_t story;
    if (!PyArg_ParseTuple(args, "OO", &story_obj, &features) || story_arg(story_obj, &story) < 0)
        return NULL;
    PyObject *fs = PySequence_Tuple(features);  /* a str subclass's __hash__ cannot change it */
    PyObject *held = fs ? PySet_New(NULL) : NULL;
    if (!held) goto error;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(fs); i++) {
        PyObject *feature = PyTuple_GET_ITEM(fs, i);
        uint64_t key;
        if (key_of(feature, &key) < 0) goto error;
        Slot *s = find(t, key);
        if (s && post_find(s, story) && PySet_Add(held, feature) < 0) goto error;
    }
    Py_DECREF(fs);
    return held;
error:
    Py_XDECREF(fs);
    Py_XDECREF(held);
    return NULL;
}

/* weights(story, features) -> [the story's centroid weight of each feature (0.0 if none)]. */
static PyObject *Table_weights(Table *t, PyObject *args) {
    PyObject *story_obj, *features;
    int32_t story;
    if (!PyArg_ParseTuple(args, "OO", &story_obj, &features) || story_arg(story_obj, &story) < 0)
        return NULL;
    PyObject *fs = PySequence_Tuple(features);  /* in a set's order, for a set */
    PyObject *out = fs ? PyList_New(PyTuple_GET_SIZE(fs)) : NULL;
    if (!out) goto error;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(fs); i++) {
        uint64_t key;
        if (key_of(PyTuple_GET_ITEM(fs, i), &key) < 0) goto error;
        Slot *s = find(t, key);
        Post *p = s ? post_find(s, story) : NULL;
        PyObject *weight = PyFloat_FromDouble(p ? p->weight : 0.0);
        if (!weight) goto error;
        PyList_SET_ITEM(out, i, weight);
    }
    Py_DECREF(fs);
    return out;
error:
    Py_XDECREF(fs);
    Py_XDECREF(out);
    return NULL;
}

/* frequent(texts, limit) -> the set of the texts' words held by at least limit members. */
static PyObject *Table_frequent(Table *t, PyObject *args) {
    PyObject *texts;
    double limit;
    if (!PyArg_ParseTuple(args, "Od", &texts, &limit)) return NULL;
    PyObject *ts = PySequence_Tuple(texts);  /* tuples: a str subclass's __hash__ cannot */
    PyObject *words = NULL, *out = ts ? PySet_New(NULL) : NULL;  /* change them */
    if (!out) goto error;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(ts); i++) {
        words = PySequence_Tuple(PyTuple_GET_ITEM(ts, i));
        if (!words) goto error;
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(words); j++) {
            PyObject *word = PyTuple_GET_ITEM(words, j);
            uint64_t key;
            if (key_of(word, &key) < 0) goto error;
            Slot *s = find(t, key);
            if ((double)(s ? s->df : 0) >= limit && PySet_Add(out, word) < 0) goto error;
        }
        Py_CLEAR(words);
    }
    Py_DECREF(ts);
    return out;
error:
    Py_XDECREF(words);
    Py_XDECREF(ts);
    Py_XDECREF(out);
    return NULL;
}

/* Appends token's word to out unless dedupe's _filter_words drops it (a stopword, a
 * stray character), cut to its first prefix letters if it is an ASCII word; steals
 * the reference to token. -1 on error. */
static int filter_word(PyObject *out, PyObject *token, PyObject *stop, Py_ssize_t prefix) {
    int stopword = PySet_Contains(stop, token);
    Py_ssize_t len = PyUnicode_GET_LENGTH(token);
    int kind = PyUnicode_KIND(token);
    const void *data = PyUnicode_DATA(token);
    int ascii = PyUnicode_IS_ASCII(token), keep = stopword == 0;
    if (keep && len == 1) {  /* a stray letter or digit, or a lone mark */
        Py_UCS4 ch = PyUnicode_READ(kind, data, 0);
        keep = Py_UNICODE_ISALNUM(ch) && !ascii;
    }
    int alpha = keep && ascii && len > 0;
    for (Py_ssize_t j = 0; alpha && j < len; j++)
        alpha = Py_UNICODE_ISALPHA(PyUnicode_READ(kind, data, j));
    PyObject *word = token;
    if (alpha && len > prefix) {  /* an ASCII word: its first letters */
        word = PyUnicode_Substring(token, 0, prefix);
        Py_DECREF(token);
    }
    int rc = stopword < 0 || !word ? -1 : keep ? PyList_Append(out, word) : 0;
    Py_XDECREF(word);
    return rc;
}

static int filter_args(PyObject *stop, Py_ssize_t prefix) {
    if (!PyAnySet_Check(stop)) {
        PyErr_SetString(PyExc_TypeError, "stopwords: a set");
        return -1;
    }
    if (prefix < 1) {
        PyErr_SetString(PyExc_ValueError, "prefix must be positive");
        return -1;
    }
    return 0;
}

/* words(tokens, stopwords, prefix): dedupe's _filter_words, which see. */
static PyObject *story_words(PyObject *module, PyObject *args) {
    PyObject *tokens, *stop;
    Py_ssize_t prefix;
    if (!PyArg_ParseTuple(args, "O!On", &PyList_Type, &tokens, &stop, &prefix) ||
        filter_args(stop, prefix) < 0)
        return NULL;
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(tokens); i++) {
        PyObject *token = PyList_GET_ITEM(tokens, i);
        if (!PyUnicode_CheckExact(token)) {
            PyErr_SetString(PyExc_TypeError, "tokens are str");
            goto error;
        }
        Py_INCREF(token);
        if (filter_word(out, token, stop, prefix) < 0) goto error;
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

static inline int ascii_alnum(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* ascii_words(text, stopwords, prefix): for ASCII text, _filter_words of its tokens
 * (tokenize's words of ASCII text are its runs of letters and digits, lower-cased),
 * without making the tokens a single character long; None for other text. */
static PyObject *story_ascii_words(PyObject *module, PyObject *args) {
    PyObject *text, *stop;
    Py_ssize_t prefix;
    if (!PyArg_ParseTuple(args, "UOn", &text, &stop, &prefix) || filter_args(stop, prefix) < 0)
        return NULL;
    if (!PyUnicode_IS_ASCII(text)) Py_RETURN_NONE;
    const unsigned char *s = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), i = 0;
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    while (i < n) {
        while (i < n && !ascii_alnum(s[i])) i++;
        Py_ssize_t start = i;
        while (i < n && ascii_alnum(s[i])) i++;
        if (i - start < 2) continue;  /* none left, or a stray character */
        PyObject *token = PyUnicode_New(i - start, 127);
        if (!token) goto error;
        Py_UCS1 *lower = PyUnicode_1BYTE_DATA(token);
        for (Py_ssize_t k = start; k < i; k++)
            lower[k - start] = s[k] >= 'A' && s[k] <= 'Z' ? s[k] + ('a' - 'A') : s[k];
        if (filter_word(out, token, stop, prefix) < 0) goto error;
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

/* Whether every element of a set is an exact str: then asking it for one runs no
 * Python code. */
static int str_set(PyObject *set) {
    if (!PyAnySet_Check(set)) {
        PyErr_SetString(PyExc_TypeError, "subject: a set of str");
        return -1;
    }
    PyObject *items = PyObject_GetIter(set), *item;
    if (!items) return -1;
    int rc = 0;
    while (rc == 0 && (item = PyIter_Next(items))) {
        if (!PyUnicode_CheckExact(item)) {
            PyErr_SetString(PyExc_TypeError, "subject: a set of str");
            rc = -1;
        }
        Py_DECREF(item);
    }
    Py_DECREF(items);
    return rc == 0 && PyErr_Occurred() ? -1 : rc;
}

/* 1 if feature holds a word of subject (is one, or has one between its spaces). */
static int holds_subject(PyObject *feature, PyObject *subject) {
    int in = PySet_Contains(subject, feature);
    Py_ssize_t len = PyUnicode_GET_LENGTH(feature);
    if (in || PyUnicode_FindChar(feature, ' ', 0, len, 1) < 0) return in;
    for (Py_ssize_t start = 0; start <= len;) {  /* feature.split(" ") */
        Py_ssize_t end = PyUnicode_FindChar(feature, ' ', start, len, 1);
        if (end == -2) return -1;
        if (end < 0) end = len;
        PyObject *part = PyUnicode_Substring(feature, start, end);
        if (!part) return -1;
        in = PySet_Contains(subject, part);
        Py_DECREF(part);
        if (in) return in;
        start = end + 1;
    }
    return 0;
}

/* without(vector, subject): dedupe's _without, which see. */
static PyObject *story_without(PyObject *module, PyObject *args) {
    PyObject *vector, *subject;
    if (!PyArg_ParseTuple(args, "O!O", &PyDict_Type, &vector, &subject) || str_set(subject) < 0)
        return NULL;
    Py_ssize_t n = PyDict_GET_SIZE(vector), kept = 0, pos = 0;
    PyObject **keys = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(PyObject *));
    double *weights = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(double));
    PyObject *out = NULL, *feature, *value;
    if (!keys || !weights) {
        PyErr_NoMemory();
        goto done;
    }
    double norm2 = 0.0;
    /* Exact str features and a set of exact str: nothing run here changes vector. */
    while (PyDict_Next(vector, &pos, &feature, &value)) {
        if (!PyUnicode_CheckExact(feature) || !PyFloat_Check(value)) {
            PyErr_SetString(PyExc_TypeError, "vector: str -> float");
            goto done;
        }
        int in = holds_subject(feature, subject);
        if (in < 0) goto done;
        if (in) continue;
        keys[kept] = feature;
        weights[kept] = PyFloat_AS_DOUBLE(value);
        norm2 += weights[kept] * weights[kept];
        kept++;
    }
#if PY_VERSION_HEX >= 0x030C0000
    if (sum_of_squares(weights, kept, &norm2) < 0) goto done;
#endif
    double norm = sqrt(norm2);
    out = PyDict_New();
    for (Py_ssize_t i = 0; out && norm > 0.0 && i < kept; i++) {
        PyObject *unit = PyFloat_FromDouble(weights[i] / norm);
        if (!unit || PyDict_SetItem(out, keys[i], unit) < 0) Py_CLEAR(out);
        Py_XDECREF(unit);
    }
done:
    PyMem_Free(keys);
    PyMem_Free(weights);
    return out;
}

/* subject_pairs(members, subject): dedupe's _Story.pairs_with of the members' (words,
 * headline words) pairs: the pairs of neighbours, in the headline or in the summary,
 * that hold a subject word, once each, in order. */
static PyObject *story_subject_pairs(PyObject *module, PyObject *args) {
    PyObject *members, *subject;
    if (!PyArg_ParseTuple(args, "OO", &members, &subject) || str_set(subject) < 0) return NULL;
    PyObject *ms = PySequence_Tuple(members), *texts = NULL, *made = NULL, *out = NULL;
    Py_ssize_t *titles = NULL, words = 0;
    Nodes seen = {NULL, NULL, 0, 0};
    if (!ms) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(ms);
    texts = PyTuple_New(n);
    titles = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(Py_ssize_t));
    if (!texts || !titles) {
        if (texts) PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *m = PyTuple_GET_ITEM(ms, i), *text;
        Py_ssize_t title;
        if (!PyTuple_Check(m) || !PyArg_ParseTuple(m, "On", &text, &title)) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "members: (words, n_title)");
            goto done;
        }
        Py_ssize_t count;
        PyObject *one = PyTuple_Pack(1, text);
        PyObject *checked = one ? word_texts(one, &count) : NULL;  /* words: exact str */
        Py_XDECREF(one);
        if (!checked) goto done;
        PyObject *ws = PyTuple_GET_ITEM(checked, 0);
        Py_INCREF(ws);
        Py_DECREF(checked);
        PyTuple_SET_ITEM(texts, i, ws);
        Py_ssize_t len = PyTuple_GET_SIZE(ws);  /* words[:title], as Python slices */
        if (title < 0) title = title + len < 0 ? 0 : title + len;
        titles[i] = title > len ? len : title;
        words += len;
    }
    made = PyList_New(0);
    if (!made || nodes_init(&seen, words) < 0) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *ws = PyTuple_GET_ITEM(texts, i);
        Py_ssize_t len = PyTuple_GET_SIZE(ws);
        int any = 0;
        for (Py_ssize_t j = 0; !any && j < len; j++) {
            any = PySet_Contains(subject, PyTuple_GET_ITEM(ws, j));
            if (any < 0) goto done;
        }
        for (Py_ssize_t j = 1; any && j < len; j++) {
            if (j == titles[i]) continue;  /* the headline's last word, the summary's first */
            PyObject *a = PyTuple_GET_ITEM(ws, j - 1), *b = PyTuple_GET_ITEM(ws, j);
            int in = PySet_Contains(subject, a);
            if (!in) in = PySet_Contains(subject, b);
            if (in < 0) goto done;
            if (!in) continue;
            PyObject *pair = pair_of(a, b);
            int rc = pair ? PyList_Append(made, pair) : -1;  /* made keeps it for seen */
            Py_XDECREF(pair);
            if (rc < 0 || nodes_get(&seen, pair, 1) == -2) goto done;
        }
    }
    out = PyList_New(seen.n);
    for (Py_ssize_t k = 0; out && k < seen.n; k++) {
        Py_INCREF(seen.nodes[k].word);
        PyList_SET_ITEM(out, k, seen.nodes[k].word);
    }
done:
    nodes_free(&seen);
    PyMem_Free(titles);
    Py_XDECREF(made);
    Py_XDECREF(texts);
    Py_DECREF(ms);
    return out;
}

/* ---- scores: the candidate loop -------------------------------------------
 *
 * scores(vector, norms, seen, horizon, posting_limit, candidates, shortlist):
 * vector is the entry's {feature: weight}; norms and seen are array('d')s by
 * story number (|centroid|, and when a member was last seen, as a POSIX
 * time). The features a story holds are taken rarest first (fewest stories;
 * ties in the vector's order). One held by at most posting_limit stories,
 * while fewer than candidates stories are proposed, adds weight * centroid
 * weight to each of its stories' dots; any other is "common". Each proposed
 * story with norm > 0 and seen >= horizon scores dot / norm. With common
 * features, the shortlist best (a stable sort, best first) get their common
 * dots added and are the only ones returned: {story number: score}.
 */

typedef struct { uint32_t size; Py_ssize_t order; double weight; Slot *slot; } Held;

static int cmp_held(const void *a, const void *b) {
    const Held *x = a, *y = b;
    if (x->size != y->size) return x->size < y->size ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Dot products by story, in the order first proposed, in an open-addressing
 * table of indexes into that order. */
typedef struct { int32_t story; double dot; } Dot;
typedef struct { Dot *items; Py_ssize_t *slots; Py_ssize_t n, cap; } Dots;

static inline size_t spread(int32_t story) { return (size_t)((uint32_t)story * 2654435761u); }

static int dots_grow(Dots *d) {
    Py_ssize_t cap = d->cap ? d->cap * 2 : 256;
    Py_ssize_t *slots = PyMem_Malloc((size_t)cap * sizeof(Py_ssize_t));
    Dot *items = PyMem_Realloc(d->items, (size_t)(cap / 2) * sizeof(Dot));
    if (!slots || !items) {
        PyMem_Free(slots);
        if (items) d->items = items;
        PyErr_NoMemory();
        return -1;
    }
    d->items = items;
    for (Py_ssize_t i = 0; i < cap; i++) slots[i] = -1;
    for (Py_ssize_t i = 0; i < d->n; i++) {
        size_t j = spread(items[i].story) & (size_t)(cap - 1);
        while (slots[j] >= 0) j = (j + 1) & (size_t)(cap - 1);
        slots[j] = i;
    }
    PyMem_Free(d->slots);
    d->slots = slots;
    d->cap = cap;
    return 0;
}

/* dots[story] = dots.get(story, 0.0) + add, where a new story starts at add. */
static int dots_add(Dots *d, int32_t story, double add) {
    if (2 * (d->n + 1) > d->cap && dots_grow(d) < 0) return -1;
    size_t mask = (size_t)(d->cap - 1), j = spread(story) & mask;
    for (;; j = (j + 1) & mask) {
        Py_ssize_t i = d->slots[j];
        if (i < 0) break;
        if (d->items[i].story == story) {
            d->items[i].dot += add;
            return 0;
        }
    }
    d->slots[j] = d->n;
    d->items[d->n++] = (Dot){story, add};
    return 0;
}

typedef struct { double score; int32_t story; double norm; double dot; } Ranked;

static int doubles(PyObject *obj, Py_buffer *view, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->itemsize != sizeof(double) || !view->format || strcmp(view->format, "d")) {
        PyErr_Format(PyExc_TypeError, "%s: an array('d')", name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int put_score(PyObject *scores, int32_t story, double score) {
    PyObject *k = PyLong_FromLong(story), *v = PyFloat_FromDouble(score);
    int rc = k && v ? PyDict_SetItem(scores, k, v) : -1;
    Py_XDECREF(k);
    Py_XDECREF(v);
    return rc;
}

static PyObject *Table_scores(Table *t, PyObject *args) {
    PyObject *vector, *norms_obj, *seen_obj;
    double horizon;
    Py_ssize_t posting_limit, candidates, shortlist;
    if (!PyArg_ParseTuple(args, "O!OOdnnn", &PyDict_Type, &vector, &norms_obj, &seen_obj,
                          &horizon, &posting_limit, &candidates, &shortlist))
        return NULL;
    if (shortlist < 1) {
        PyErr_SetString(PyExc_ValueError, "shortlist must be positive");
        return NULL;
    }
    Py_buffer norms_view, seen_view;
    if (doubles(norms_obj, &norms_view, "norms") < 0) return NULL;
    if (doubles(seen_obj, &seen_view, "seen") < 0) {
        PyBuffer_Release(&norms_view);
        return NULL;
    }
    const double *norms = norms_view.buf, *seen = seen_view.buf;
    Py_ssize_t stories = Py_MIN(norms_view.len, seen_view.len) / (Py_ssize_t)sizeof(double);
    Dots dots = {NULL, NULL, 0, 0};
    Ranked *top = NULL;
    PyObject *scores = PyDict_New();
    Py_ssize_t nvec = PyDict_GET_SIZE(vector), nheld = 0, ncommon = 0, kept = 0;
    Held *held = PyMem_Malloc((size_t)(nvec ? nvec : 1) * sizeof(Held));
    Held **common = PyMem_Malloc((size_t)(nvec ? nvec : 1) * sizeof(Held *));
    if (!scores || !held || !common) {
        if (scores) PyErr_NoMemory();
        goto error;
    }
    Py_ssize_t pos = 0, order = 0;
    PyObject *feature, *value;
    while (PyDict_Next(vector, &pos, &feature, &value)) {
        int bad;
        Slot *s = slot_of(t, feature, &bad);
        if (bad) goto error;
        double weight = PyFloat_AsDouble(value);
        if (weight == -1.0 && PyErr_Occurred()) goto error;
        if (s) held[nheld++] = (Held){s->n, order, weight, s};
        order++;
    }
    qsort(held, (size_t)nheld, sizeof(Held), cmp_held);
    for (Py_ssize_t i = 0; i < nheld; i++) {
        Held *h = &held[i];
        if ((Py_ssize_t)h->size > posting_limit || dots.n >= candidates) {
            common[ncommon++] = h;
            continue;
        }
        Post *a = posts_of(h->slot);
        for (uint32_t k = 0; k < h->slot->n; k++)
            if (dots_add(&dots, a[k].story, h->weight * a[k].weight) < 0) goto error;
    }
    if (ncommon) {
        top = PyMem_Calloc((size_t)shortlist, sizeof(Ranked));
        if (!top) {
            PyErr_NoMemory();
            goto error;
        }
    }
    for (Py_ssize_t d = 0; d < dots.n; d++) {
        int32_t story = dots.items[d].story;
        if (story >= stories) {
            PyErr_Format(PyExc_IndexError, "story %d has no norm", (int)story);
            goto error;
        }
        double norm = norms[story];
        if (!(norm > 0.0) || !(seen[story] >= horizon)) continue;
        double dot = dots.items[d].dot, score = dot / norm;
        if (!ncommon) {
            if (put_score(scores, story, score) < 0) goto error;
            continue;
        }
        /* A stable top-k, best first: a score goes after every kept score >= it. */
        if (kept == shortlist && !(score > top[kept - 1].score)) continue;
        Py_ssize_t at = kept < shortlist ? kept : shortlist - 1;
        while (at > 0 && top[at - 1].score < score) {
            top[at] = top[at - 1];
            at--;
        }
        top[at] = (Ranked){score, story, norm, dot};
        if (kept < shortlist) kept++;
    }
    for (Py_ssize_t k = 0; k < kept; k++) {
        double dot = top[k].dot;
        for (Py_ssize_t c = 0; c < ncommon; c++) {
            Post *p = post_find(common[c]->slot, top[k].story);
            if (p) dot += common[c]->weight * p->weight;
        }
        if (put_score(scores, top[k].story, dot / top[k].norm) < 0) goto error;
    }
    PyMem_Free(top);
    PyMem_Free(dots.items);
    PyMem_Free(dots.slots);
    PyMem_Free(held);
    PyMem_Free(common);
    PyBuffer_Release(&norms_view);
    PyBuffer_Release(&seen_view);
    return scores;
error:
    PyMem_Free(top);
    PyMem_Free(dots.items);
    PyMem_Free(dots.slots);
    PyMem_Free(held);
    PyMem_Free(common);
    PyBuffer_Release(&norms_view);
    PyBuffer_Release(&seen_view);
    Py_XDECREF(scores);
    return NULL;
}

static PyMethodDef Table_methods[] = {
    {"accumulate", (PyCFunction)Table_accumulate, METH_VARARGS,
     "accumulate(story, features, weights) -> (dot, norm2): a member into its story: the "
     "dot product of the member with the centroid before, and its |vector|²."},
    {"withdraw", (PyCFunction)Table_withdraw, METH_VARARGS,
     "withdraw(story, features, weights) -> (dot, norm2): a member out of its story (the dot "
     "product with the centroid it leaves, and its |vector|²); KeyError, and nothing "
     "changed, if it is not there."},
    {"df", (PyCFunction)Table_df, METH_O, "df(feature) -> members holding it."},
    {"size", (PyCFunction)Table_size, METH_O, "size(feature) -> stories holding it."},
    {"count", (PyCFunction)Table_count, METH_VARARGS,
     "count(feature, story) -> the story's members holding it."},
    {"weight", (PyCFunction)Table_weight, METH_VARARGS,
     "weight(feature, story) -> its weight in the story's centroid (0.0 if none)."},
    {"scores", (PyCFunction)Table_scores, METH_VARARGS,
     "scores(vector, norms, seen, horizon, posting_limit, candidates, shortlist) -> "
     "{story: score}: the candidate loop."},
    {"vector", (PyCFunction)Table_vector, METH_VARARGS,
     "vector(texts, weights, pair_weight, total) -> unit vector: an entry's TF-IDF vector "
     "over its words and word pairs ({} if it is 0)."},
    {"concepts", (PyCFunction)Table_concepts, METH_VARARGS,
     "concepts(story, texts, common, titled) -> float: the concepts the words of texts "
     "share with the story (monitor.dedupe._concepts)."},
    {"shared", (PyCFunction)Table_shared, METH_VARARGS,
     "shared(story, texts, common) -> the words of texts the story holds, less common, "
     "once each, in order."},
    {"weights", (PyCFunction)Table_weights, METH_VARARGS,
     "weights(story, features) -> [weight(feature, story) for each feature]."},
    {"holding", (PyCFunction)Table_holding, METH_VARARGS,
     "holding(story, features) -> the set of the features the story holds."},
    {"frequent", (PyCFunction)Table_frequent, METH_VARARGS,
     "frequent(texts, limit) -> the set of the texts' words held by >= limit members."},
    {"nbytes", (PyCFunction)Table_nbytes, METH_NOARGS, "nbytes() -> bytes allocated."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Table_as_sequence = {.sq_length = (lenfunc)Table_len};

static PyTypeObject TableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "monitor._storycore.Table",
    .tp_doc = "Features -> document count and (story, members, centroid weight) postings.",
    .tp_basicsize = sizeof(Table),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Table_new,
    .tp_dealloc = (destructor)Table_dealloc,
    .tp_methods = Table_methods,
    .tp_as_sequence = &Table_as_sequence,
};

static PyMethodDef module_methods[] = {
    {"words", (PyCFunction)story_words, METH_VARARGS,
     "words(tokens, stopwords, prefix) -> list: the content words of a list of tokens "
     "(monitor.dedupe._filter_words)."},
    {"grams", (PyCFunction)story_grams, METH_VARARGS,
     "grams(texts, weights, pair_weight) -> {feature: weight}: an entry's words and word "
     "pairs at the highest weight each gets (monitor.dedupe._grams)."},
    {"without", (PyCFunction)story_without, METH_VARARGS,
     "without(vector, subject) -> the unit vector without the features that hold a subject "
     "word (monitor.dedupe._without)."},
    {"subject_pairs", (PyCFunction)story_subject_pairs, METH_VARARGS,
     "subject_pairs(members, subject) -> the pairs of the members' (words, n_title) that "
     "hold a subject word, once each, in order (monitor.dedupe._Story.pairs_with)."},
    {"ascii_words", (PyCFunction)story_ascii_words, METH_VARARGS,
     "ascii_words(text, stopwords, prefix) -> list | None: words() of the tokens of an "
     "ASCII text, None for other text."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "monitor._storycore",
    "The story index's feature table, candidate loop and an entry's words and vector in C "
    "(see monitor.dedupe._PyTable).",
    -1, module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__storycore(void) {
    if (PyType_Ready(&TableType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Table", (PyObject *)&TableType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

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
 * AddressSanitizer and UBSan).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
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

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "monitor._storycore",
    "The story index's feature table and candidate loop in C (see monitor.dedupe._PyTable).",
    -1, NULL, NULL, NULL, NULL, NULL,
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

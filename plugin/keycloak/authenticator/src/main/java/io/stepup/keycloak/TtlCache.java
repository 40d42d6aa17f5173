package io.stepup.keycloak;

import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;

/**
 * A tiny time-bounded cache (discovery documents, JWKS, recent refetches and timeouts). Entries expire {@code ttl}
 * after they were stored; there is no size bound because keys are the few issuers and JWKS URLs configured in the realm.
 */
final class TtlCache<K, V> {

    private final Duration ttl;
    private final Clock clock;
    private final ConcurrentMap<K, Entry<V>> entries = new ConcurrentHashMap<>();

    TtlCache(Duration ttl, Clock clock) {
        this.ttl = ttl;
        this.clock = clock;
    }

    /** @return the cached value, or {@code null} when absent or expired */
    V get(K key) {
        Entry<V> entry = entries.get(key);
        if (entry == null || !clock.instant().isBefore(entry.expires)) {
            return null;
        }
        return entry.value;
    }

    void put(K key, V value) {
        entries.put(key, new Entry<>(value, clock.instant().plus(ttl)));
    }

    /**
     * Stores {@code value} unless an unexpired entry is there; atomic, so of many threads at most one wins.
     *
     * @return whether {@code value} was stored
     */
    boolean putIfAbsent(K key, V value) {
        Instant now = clock.instant();
        Entry<V> entry = new Entry<>(value, now.plus(ttl));
        return entries.merge(key, entry, (old, fresh) -> now.isBefore(old.expires) ? old : fresh) == entry;
    }

    void remove(K key) {
        entries.remove(key);
    }

    private static final class Entry<V> {
        final V value;
        final Instant expires;

        Entry(V value, Instant expires) {
            this.value = value;
            this.expires = expires;
        }
    }
}

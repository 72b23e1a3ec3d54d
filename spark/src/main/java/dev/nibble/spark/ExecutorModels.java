package dev.nibble.spark;

import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.runtime.Devices;
import dev.nibble.runtime.LoadProgress;
import dev.nibble.runtime.Model;
import dev.nibble.runtime.Placement;
import dev.nibble.runtime.chat.ChatFormat;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The models this JVM (a Spark executor, or the driver in local mode) has loaded, shared by all its tasks: each model
 * file is mapped once per JVM, whatever the number of tasks, stages and jobs that use it.
 *
 * <p>Lifetime: an entry is kept for the JVM's life (an executor runs many tasks; mapping and placing the weights is
 * the expensive part), reference-counted only to know when it may go: when the file changes on disk (another size,
 * modification time or inode) the next task loads the new file, and the old entry is closed as soon as the last task
 * using it ends. Weights are memory-mapped (page cache, not heap); each task's KV cache belongs to its own engine and
 * is freed when the task ends.
 */
public final class ExecutorModels {

    /** Which loaded model: the file as it is on disk now, and the device it runs on. */
    private record Key(Path file, long size, long modified, Object inode, String device, int threads) {
    }

    /** A loaded model and the tasks using it. */
    private static final class Entry {
        final Key key;
        final Placement placement;
        final Model model;
        final Tokenizer tokenizer;
        ChatFormat chatFormat; // made on first use (a Jinja template), under the class lock
        int users;
        boolean stale; // the file changed: close when the last user is gone

        Entry(Key key, Placement placement, Model model, Tokenizer tokenizer) {
            this.key = key;
            this.placement = placement;
            this.model = model;
            this.tokenizer = tokenizer;
        }

        void close() {
            model.close();
            placement.close();
        }
    }

    /** A task's use of a loaded model; {@link #close} gives it back (the model stays loaded). */
    public static final class Lease implements AutoCloseable {
        private final Entry entry;
        private boolean closed;

        private Lease(Entry entry) {
            this.entry = entry;
        }

        public Model model() {
            return entry.model;
        }

        public Tokenizer tokenizer() {
            return entry.tokenizer;
        }

        /** The model's own chat template (or the built-in one its vocabulary suggests), as {@code nibble batch}'s. */
        public ChatFormat chatFormat() {
            synchronized (ExecutorModels.class) {
                if (entry.chatFormat == null) {
                    entry.chatFormat = ChatFormat.forModel(entry.model.file(), entry.tokenizer);
                }
                return entry.chatFormat;
            }
        }

        @Override
        public void close() {
            synchronized (ExecutorModels.class) {
                if (closed) {
                    return;
                }
                closed = true;
                entry.users--;
                if (entry.stale && entry.users == 0) {
                    entry.close();
                }
            }
        }
    }

    private static final Map<Key, Entry> ENTRIES = new HashMap<>();
    private static long loads;

    private ExecutorModels() {
    }

    /**
     * The model in {@code file} on {@code device} (auto, cpu, cuda, cuda:N) with {@code threads} CPU threads (0: one
     * per CPU this process may use), loaded now unless this JVM has it already. Loading holds a lock, so tasks that
     * start together wait for one load rather than each loading the file.
     */
    public static Lease acquire(Path file, String device, int threads) throws IOException {
        BasicFileAttributes attributes = Files.readAttributes(file, BasicFileAttributes.class);
        Key key = new Key(file.toAbsolutePath().normalize(), attributes.size(),
                attributes.lastModifiedTime().toMillis(), attributes.fileKey(), device, threads);
        synchronized (ExecutorModels.class) {
            Entry entry = ENTRIES.get(key);
            if (entry == null) {
                retire(key);
                Placement placement = Devices.open(device, threads, 0, Placement.FIT).placement();
                try {
                    Model model = Model.load(file, placement, 0, LoadProgress.NONE);
                    try {
                        entry = new Entry(key, placement, model, Tokenizer.from(VocabularyGguf.read(model.file())));
                    } catch (RuntimeException e) {
                        model.close();
                        throw e;
                    }
                } catch (IOException | RuntimeException e) {
                    placement.close();
                    throw e;
                }
                ENTRIES.put(key, entry);
                loads++;
            }
            entry.users++;
            return new Lease(entry);
        }
    }

    /** Entries of the same file and device whose file has changed since: closed now if unused, else when released. */
    private static void retire(Key fresh) {
        List<Key> old = new ArrayList<>();
        for (Key k : ENTRIES.keySet()) {
            if (k.file().equals(fresh.file()) && k.device().equals(fresh.device()) && k.threads() == fresh.threads()) {
                old.add(k);
            }
        }
        for (Key k : old) {
            Entry e = ENTRIES.remove(k);
            e.stale = true;
            if (e.users == 0) {
                e.close();
            }
        }
    }

    /** Models this JVM has loaded since it started (each file and device once, unless the file changed). */
    public static synchronized long loads() {
        return loads;
    }

    /** Models loaded now. */
    public static synchronized int loaded() {
        return ENTRIES.size();
    }

    /** Closes the loaded models that no task uses now (their next use loads them again); returns how many. */
    public static synchronized int releaseUnused() {
        List<Key> unused = ENTRIES.entrySet().stream().filter(e -> e.getValue().users == 0).map(Map.Entry::getKey)
                .toList();
        for (Key k : unused) {
            ENTRIES.remove(k).close();
        }
        return unused.size();
    }
}

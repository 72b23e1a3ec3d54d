package dev.nibble.spark;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.nibble.runtime.BatchEngine;
import dev.nibble.runtime.Generation;
import dev.nibble.runtime.GenerationResult;
import dev.nibble.runtime.GenerationSettings;
import dev.nibble.runtime.Model;
import dev.nibble.runtime.Sampler;
import dev.nibble.runtime.SamplerSettings;
import dev.nibble.runtime.chat.ChatFormat;
import dev.nibble.runtime.chat.ChatMessage;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.IntFunction;
import org.apache.spark.TaskContext;
import org.apache.spark.api.java.function.MapPartitionsFunction;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.util.TaskCompletionListener;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The work of one task: every request of its partition through one {@link BatchEngine} (continuous batching: up to
 * {@code parallel} sequences per forward pass) on the model this executor JVM shares between its tasks
 * ({@link ExecutorModels}). Results are streamed to the writer as requests finish. A request that cannot run or fails
 * is an error row; only a missing or different model file (or a model that cannot load) fails the task.
 */
final class PartitionGenerator implements MapPartitionsFunction<Row, Row> {

    private static final long serialVersionUID = 1L;
    private static final Logger LOG = LoggerFactory.getLogger(PartitionGenerator.class);

    private final Settings settings;
    private final Request.Columns columns;

    PartitionGenerator(Settings settings, Request.Columns columns) {
        this.settings = settings;
        this.columns = columns;
    }

    @Override
    public Iterator<Row> call(Iterator<Row> rows) throws IOException {
        ObjectMapper json = new ObjectMapper();
        List<Request> requests = new ArrayList<>();
        while (rows.hasNext()) {
            requests.add(Request.of(rows.next(), columns, json));
        }
        List<Row> errors = new ArrayList<>();
        for (Request r : requests) {
            if (r.error() != null) {
                errors.add(error(r.id(), r.error()));
            }
        }
        if (errors.size() == requests.size()) { // nothing to run: no model needed
            return errors.iterator();
        }
        Run run = new Run(settings, ExecutorModels.acquire(settings.model().resolve(), settings.device(),
                settings.threads()));
        TaskContext task = TaskContext.get();
        if (task != null) {
            task.addTaskCompletionListener(new TaskCompletionListener() { // also when the task fails or is killed
                @Override
                public void onTaskCompletion(TaskContext context) {
                    run.close();
                }
            });
        }
        try {
            run.start(requests, errors);
        } catch (RuntimeException e) {
            run.close();
            throw e;
        }
        return run.results(task);
    }

    static Row error(Object id, String message) {
        return RowFactory.create(id, "", "error", 0, 0, message);
    }

    /** Why generation ended, in nibble batch's words. */
    static String finishReason(GenerationResult.StopReason reason) {
        return switch (reason) {
            case END_TOKEN, STOP_STRING -> "stop";
            case MAX_TOKENS -> "length";
            case CONTEXT_FULL -> "context";
            case CANCELLED -> throw new IllegalArgumentException("a cancelled request has no result");
        };
    }

    /** One partition's engine: its requests in, its rows out (as they finish), then the engine and model let go. */
    private static final class Run implements AutoCloseable {
        private final Settings settings;
        private final ExecutorModels.Lease lease;
        private final LinkedBlockingQueue<Row> done = new LinkedBlockingQueue<>();
        private BatchEngine engine;
        private int expected;
        private boolean closed;

        Run(Settings settings, ExecutorModels.Lease lease) {
            this.settings = settings;
            this.lease = lease;
        }

        /** A request ready to run: its id, what it needs of the context and the generation to make for it. */
        private record Job(Object id, int need, IntFunction<Generation> generation) {
        }

        void start(List<Request> requests, List<Row> errors) {
            Model model = lease.model();
            Tokenizer tokenizer = lease.tokenizer();
            SamplerSettings defaults = settings.sampler().settings();
            done.addAll(errors);
            expected = requests.size();
            List<Job> jobs = new ArrayList<>();
            for (Request r : requests) {
                if (r.error() != null) {
                    continue;
                }
                boolean answer = r.chat() || settings.chat() || settings.system() != null;
                try {
                    jobs.add(job(r, answer ? lease.chatFormat() : null, tokenizer, model, defaults));
                } catch (IllegalArgumentException e) {
                    done.add(error(r.id(), e.getMessage()));
                }
            }
            if (jobs.isEmpty()) {
                return;
            }
            int trained = model.config().contextLength();
            int longest = jobs.stream().mapToInt(Job::need).max().orElse(1);
            int context = settings.context() > 0 ? settings.context() : Math.min(trained, longest);
            // no more places than requests: a small partition reserves no KV cache it cannot use
            BatchEngine.Plan plan = BatchEngine.plan(model, Math.min(settings.parallel(), jobs.size()), context);
            TaskContext task = TaskContext.get();
            LOG.info("nibble: {}{} requests on {}: {}", task == null ? "" : "partition " + task.partitionId() + ", ",
                    jobs.size(), model.description(), plan.describe());
            synchronized (this) {
                if (closed) {
                    return;
                }
                engine = new BatchEngine(model, tokenizer, plan.options());
            }
            for (Job job : jobs) {
                engine.submit(job.generation()).handle((result, failure) -> {
                    Throwable cause = failure instanceof CompletionException c ? c.getCause() : failure;
                    if (cause instanceof CancellationException) {
                        return null; // the task ended before it (failed or killed): not a result
                    }
                    done.add(cause == null ? RowFactory.create(job.id(), result.text(),
                            finishReason(result.stopReason()), result.promptTokens(), result.generatedTokens(), null)
                            : error(job.id(), cause.getMessage() != null ? cause.getMessage() : cause.toString()));
                    return null;
                });
            }
        }

        /** nibble batch's request → generation: sampling over the defaults, stop strings, chat or plain text. */
        private Job job(Request r, ChatFormat format, Tokenizer tokenizer, Model m, SamplerSettings defaults) {
            SamplerSettings sampler = r.sampling().over(defaults);
            List<String> stops = new ArrayList<>(settings.stop());
            stops.addAll(r.stop());
            int max = r.maxTokens() != null ? r.maxTokens() : settings.maxTokens();
            GenerationSettings generation = new GenerationSettings(max, sampler, stops);
            int trained = m.config().contextLength();
            int[] ids;
            IntFunction<Generation> make;
            if (format != null) {
                String system = settings.system();
                List<ChatMessage> conversation = new ArrayList<>();
                if (r.messages() != null) {
                    if (system != null && !r.messages().getFirst().role().equals(ChatMessage.SYSTEM)) {
                        conversation.add(ChatMessage.system(system));
                    }
                    conversation.addAll(r.messages());
                } else {
                    if (system != null) {
                        conversation.add(ChatMessage.system(system));
                    }
                    conversation.add(ChatMessage.user(r.prompt()));
                }
                ids = format.encode(conversation, true);
                int[] prompt = ids;
                make = context -> Generation.answering(prompt, generation, new Sampler(sampler)::sample, format,
                        context, text -> { });
            } else {
                ids = tokenizer.encode(r.prompt(), tokenizer.vocabulary().addBos(), true);
                if (ids.length == 0) {
                    throw new IllegalArgumentException("the prompt is empty and this model adds no BOS token");
                }
                int[] prompt = ids;
                make = context -> Generation.continuing(prompt, generation, tokenizer, m.config().eosIds(), context,
                        text -> { });
            }
            int need = (int) Math.min(trained, max < 0 ? trained : (long) ids.length + max);
            return new Job(r.id(), Math.max(need, ids.length + 1), make);
        }

        /** The rows, each as soon as its request ends; the engine is closed once the last one is out. */
        Iterator<Row> results(TaskContext task) {
            return new Iterator<>() {
                private int given;

                @Override
                public boolean hasNext() {
                    if (given < expected) {
                        return true;
                    }
                    close(); // all out: free the KV cache now, before the writer commits
                    return false;
                }

                @Override
                public Row next() {
                    if (!hasNext()) {
                        throw new NoSuchElementException();
                    }
                    try {
                        Row row;
                        while ((row = done.poll(100, TimeUnit.MILLISECONDS)) == null) {
                            if (task != null) {
                                task.killTaskIfInterrupted(); // a speculative copy that lost, a cancelled job
                            }
                            if (isClosed() && done.isEmpty()) {
                                throw new IllegalStateException("the task's engine was closed before its "
                                        + (expected - given) + " remaining requests ended");
                            }
                        }
                        given++;
                        return row;
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        close();
                        throw new UncheckedIOException(new java.io.InterruptedIOException("interrupted while "
                                + "generating"));
                    }
                }
            };
        }

        private synchronized boolean isClosed() {
            return closed;
        }

        @Override
        public void close() {
            BatchEngine e;
            synchronized (this) {
                if (closed) {
                    return;
                }
                closed = true;
                e = engine;
            }
            try {
                if (e != null) {
                    e.close();
                }
            } finally {
                lease.close();
            }
        }
    }
}

// pgjdbc through PgBouncer in transaction pooling mode: with prepareThreshold=1
// every execution uses a named server-side prepared statement, and each
// autocommit execution may land on a different gateway connection; PgBouncer's
// max_prepared_statements re-prepares it there. Usage: PooledPrepareTest HOST PORT
import java.sql.*;
import java.util.Properties;

public class PooledPrepareTest {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/velostream";
        Properties props = new Properties();
        props.setProperty("user", "alice");
        props.setProperty("prepareThreshold", "1");
        props.setProperty("connectTimeout", "10");
        // Three clients at once over a pool of two gateway connections: their
        // transactions keep moving between the connections.
        Thread[] clients = new Thread[3];
        Throwable[] failure = new Throwable[1];
        for (int i = 0; i < clients.length; i++) {
            clients[i] = new Thread(() -> {
                try (Connection c = DriverManager.getConnection(url, props);
                     PreparedStatement ps = c.prepareStatement(
                         "SELECT symbol, volume FROM trades WHERE volume > ? LIMIT ?")) {
                    for (int round = 0; round < 20; round++) {
                        ps.setLong(1, round);
                        ps.setLong(2, 2);
                        int n = 0;
                        try (ResultSet rs = ps.executeQuery()) {
                            while (rs.next()) {
                                n++;
                                check(rs.getLong(2) > round, "volume above " + round);
                            }
                        }
                        check(n == 2, "2 rows, got " + n);
                        check(ps.unwrap(org.postgresql.PGStatement.class).isUseServerPrepare(),
                            "server-side prepare in use");
                    }
                } catch (Throwable t) {
                    synchronized (failure) { failure[0] = t; }
                }
            });
            clients[i].start();
        }
        for (Thread t : clients) t.join();
        if (failure[0] != null) throw new AssertionError("client failed", failure[0]);
        System.out.println("pooled prepare ok");
    }
}

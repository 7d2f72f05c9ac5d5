-- The tiny schema the guard's cases (cases.yaml) run against. The guard's own
-- read-only test seeds it; an end-to-end replay through the proxy can too.
CREATE TABLE users (id int PRIMARY KEY, name text, email text, x int);
CREATE TABLE orders (id int PRIMARY KEY, user_id int, amount numeric);
CREATE SCHEMA app;
CREATE TABLE app.accounts (id int PRIMARY KEY, balance numeric);
CREATE SEQUENCE s;
INSERT INTO users VALUES (1, 'ann', 'ann@example.com', 1), (2, 'bob', 'bob@example.com', 2);
INSERT INTO orders VALUES (1, 1, 10), (2, 2, 20);
INSERT INTO app.accounts VALUES (1, 100);
-- A user-defined function that writes: the guard cannot see its body and
-- classifies a call as read; the read-only session refuses it (second wall).
CREATE FUNCTION app_touch(i int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  UPDATE users SET x = x + 1 WHERE id = i;
  RETURN i;
END
$$;
CREATE FUNCTION app_double(i int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT i * 2';

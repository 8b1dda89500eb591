"""The registry: platform tree, enterprises, products, devices, principals — in SQL.

SQLAlchemy 2.x is the port: SQLite by default, PostgreSQL by URL; the SQL stays portable
(no dialect-specific types, JSON through SQLAlchemy's JSON type)."""

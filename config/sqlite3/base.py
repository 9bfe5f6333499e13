"""Django's SQLite backend, with the database file created readable by its owner only
(config/files.py). ENGINE ``config.sqlite3``."""

from django.db.backends.sqlite3 import base

from config.files import private_sqlite


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        private_sqlite(str(conn_params.get("database", "")))
        return super().get_new_connection(conn_params)
